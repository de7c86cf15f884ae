"""The `deskpilot` command: with no arguments it opens the app; otherwise a subcommand.

Each subcommand lives in its own module under app/commands/ with a `main(argv) -> int`
and is imported only when used, so `deskpilot parse` starts without torch or Qt.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module under app.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "app": ("gui", "open the desktop app (the default)"),
    "parse": ("parse", "parse a model reply (stdin) into actions, as JSON"),
    "run": ("run", "run a task headless with a local, remote, scripted or replayed policy"),
    "replay": ("replay", "re-execute a recorded run on the live screen"),
    "export": ("export", "export recorded runs as training data"),
    "report": ("report", "write a self-contained HTML report of a run"),
    "record-demo": ("record_demo", "record a person doing a task, as a run"),
    "sandbox": ("sandbox", "open the practice sandbox window"),
    "bench": ("bench", "benchmarks: `bench step`, `bench kernels`"),
    "serve": ("serve", "serve a local model over an OpenAI-compatible HTTP API"),
    "models": ("models", "the model catalogue: `models list|info ID|download ID`"),
    "train": ("train", "fine-tune the model on recorded runs: `train sft|dpo|plan`"),
    "eval": ("eval", "measure a policy: `eval tasks` (practice suite), `eval grounding`"),
    "tasks": ("tasks", "the practice task suite: `tasks show|label|export-grounding`"),
}


def usage() -> str:
    lines = ["usage: deskpilot [COMMAND] [ARGS...]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `deskpilot COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())  # noqa: T201 - the CLI's own output
        return 0
    name = argv.pop(0) if argv else "app"
    if name not in COMMANDS:
        print(f"deskpilot: unknown command {name!r}\n\n{usage()}", file=sys.stderr)  # noqa: T201
        return 2
    module = importlib.import_module(f"app.commands.{COMMANDS[name][0]}")
    return int(module.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
