"""`deskpilot train {sft,dpo,mini,plan} ...`: train the model on runs or practice tasks.

Each method has its own command module (imported only when used, so `train plan` starts
without torch): `train sft` → app/commands/train_sft.py, `train dpo` → train_dpo.py,
`train mini` → train_mini.py, `train plan` → train_plan.py. The training code itself
lives in the `train` package.
"""

from __future__ import annotations

import importlib
import sys

METHODS = {
    "sft": ("train_sft", "supervised fine-tuning (LoRA or full) on runs and demonstrations"),
    "dpo": ("train_dpo", "preference tuning (DPO) on chosen/rejected replies"),
    "mini": ("train_mini", "build and train deskpilot-mini, the embedded default model"),
    "plan": ("train_plan", "memory estimate for a fine-tuning run, and whether it fits"),
}

NEEDS_LOCAL = ("sft", "dpo")  # train on the local engine; `plan` only reads file headers


def usage() -> str:
    lines = ["usage: deskpilot train {" + ",".join(METHODS) + "} [ARGS...]", ""]
    lines += [f"  {name:<6} {help_}" for name, (_, help_) in METHODS.items()]
    lines += ["", "Run `deskpilot train METHOD --help` for its options."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())  # noqa: T201 - the CLI's own output
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in METHODS:
        print(f"deskpilot train: unknown method {name!r}\n\n{usage()}",  # noqa: T201
              file=sys.stderr)
        return 2
    if name in NEEDS_LOCAL and not any(a in ("-h", "--help") for a in rest):
        from agent.extras import MissingExtraError, require_local

        try:
            require_local(f"deskpilot train {name}")
        except MissingExtraError as exc:
            print(f"deskpilot train: {exc}", file=sys.stderr)  # noqa: T201
            return 2
    module = importlib.import_module(f"app.commands.{METHODS[name][0]}")
    return int(module.main(rest) or 0)
