"""`deskpilot run "TASK" --policy ...`: run one task headless and record it.

The same loop the app runs, driven from a terminal: prints each step's thought and
actions as they happen and the outcome at the end, records the run (on by default), and
exits 0 only when the model said the task is finished. There is no person at a dialog
here, so actions the safety policy wants confirmed are refused unless `--yes` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from app.commands.common import EXIT_USAGE, UsageError, setup_logging

log = logging.getLogger("deskpilot.run")

DEFAULT_SCRIPT_DIALECT = "uitars-1.5"
EXIT_FINISHED, EXIT_NOT_FINISHED = 0, 1



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deskpilot run",
        description="Run a task on the screen with a local, remote, scripted or replayed model.",
    )
    p.add_argument("task", help="what to do, in plain language")
    p.add_argument(
        "--policy",
        required=True,
        help="local:PATH (checkpoint folder or hub id), remote:URL (OpenAI-compatible), "
        "script:FILE (replies separated by '---' lines) or replay:RUN (a recorded run)",
    )
    p.add_argument("--dialect",
                   help="uitars-1.5, uitars-1.0, qwen3-vl, qwen3.5 or auto (default: settings)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        help="longest reply per step, in tokens (default: settings.max_new_tokens, 512)",
    )
    rec = p.add_mutually_exclusive_group()
    rec.add_argument("--record", metavar="DIR", help="runs folder (default: settings.runs_dir)")
    rec.add_argument("--no-record", action="store_true", help="do not record the run")
    p.add_argument("--dry-run", action="store_true", help="execute nothing; record what would run")
    p.add_argument("--safety", choices=("strict", "normal", "off"), help="safety level")
    p.add_argument(
        "--yes", action="store_true", help="confirm every action that needs confirmation"
    )
    p.add_argument("--monitor", help="'auto' or a monitor index (default: settings)")
    p.add_argument("--settle-timeout", type=float, metavar="S", help="max seconds to settle")
    p.add_argument(
        "--env",
        choices=("desktop", "memory"),
        default="desktop",
        help="the real desktop, or an in-memory screen (for trying scripts without a display)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    return p


# --- building the pieces -------------------------------------------------------------------


def resolve_dialect(name: str, scheme: str, target: str, policy: Any) -> str:
    """The dialect name to use; "auto" looks at the checkpoint or the recorded run."""
    if name and name != "auto":
        return name
    if scheme == "local":
        from agent.dialects import dialect_for_checkpoint

        config_file = Path(target).expanduser() / "config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        else:
            config = getattr(policy, "config_dict", None) or {}
        return dialect_for_checkpoint(config)
    if scheme == "replay":
        recorded = getattr(getattr(policy, "run", None), "meta", {}).get("dialect")
        if recorded:
            return recorded
    if scheme == "remote":
        from agent.policy_spec import remote_dialect

        return remote_dialect(policy)  # from the served model's id, or an error
    return DEFAULT_SCRIPT_DIALECT


def dialect_max_pixels(configured: int | None, scheme: str, target: str) -> int | None:
    """The settings' max_pixels; when unset, a local checkpoint's own bound (its
    preprocessor_config.json), so a model trained on small screenshots (deskpilot-mini) is
    shown the size it learned on. None: the dialect's default."""
    if configured or scheme != "local":
        return configured
    f = Path(target).expanduser() / "preprocessor_config.json"
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = d.get("max_pixels") or (d.get("size") or {}).get("longest_edge")
    return int(value) if isinstance(value, int | float) and value > 0 else None


def build_env(args: argparse.Namespace, settings: Any) -> Any:
    if args.env == "memory":
        from agent.memenv import MemoryEnv

        env = MemoryEnv()
    else:
        from agent.desktop import DesktopEnv

        monitor = args.monitor if args.monitor is not None else settings.monitor
        if isinstance(monitor, str) and monitor != "auto":
            if not monitor.isdigit():
                raise UsageError(f"--monitor must be 'auto' or an index, got {monitor!r}")
            monitor = int(monitor)
        settle = settings.settle_timeout if args.settle_timeout is None else args.settle_timeout
        if settle < 0:
            raise UsageError(f"--settle-timeout must be >= 0, got {settle}")
        env = DesktopEnv(
            monitor=monitor, settle_timeout=settle, settle_threshold=settings.settle_threshold
        )
    if args.dry_run:
        from agent.dryrun import DryRunEnv

        env = DryRunEnv(env)
    return env


def monitor_dicts(env: Any) -> list[dict]:
    monitors = env.monitors() if hasattr(env, "monitors") else []
    return [m.to_dict() if hasattr(m, "to_dict") else dict(m) for m in monitors]


def confirm_everything(action: Any, why: str) -> bool:
    print(f"  --yes: confirming {action.name}: {why}")  # noqa: T201
    return True


# --- printing ------------------------------------------------------------------------------


def describe_action(action: Any) -> str:
    """`click(point=[966, 546]) -> screen (960, 540)`: model-space call, then where it lands."""
    data = {k: v for k, v in action.to_dict().items() if k != "type" and v is not None}
    screens = [data.pop(k) for k in ("screen", "screen_start", "screen_end") if k in data]
    parts = [f"{k}={v!r}" for k, v in data.items()]
    text = f"{action.name}({', '.join(parts)})"
    if screens:
        text += " -> screen " + " to ".join(f"({round(x)}, {round(y)})" for x, y in screens)
    return text


def print_step(step: Any) -> None:
    out = []
    thought = step.response.thought if step.response is not None else ""
    out.append(f"step {step.index + 1}: {thought.strip() or '(no thought)'}")
    if step.parse_error:
        out.append(f"  parse error: {step.parse_error}")
    for i, action in enumerate(step.actions):
        line = f"  {describe_action(action)}"
        if i < len(step.decisions):
            d = step.decisions[i]
            line += f"  [{d.verdict}]" if d.verdict == "run" else f"  [{d.verdict}: {d.reason}]"
        if i < len(step.results):
            r = step.results[i]
            line += "" if r.ok else f"  FAILED: {r.error}"
            if r.details.get("dry_run"):
                line += "  (dry run)"
        out.append(line)
    if step.error and step.error != step.parse_error:
        out.append(f"  error: {step.error}")
    print("\n".join(out), flush=True)  # noqa: T201


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"deskpilot run: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from agent.loop import Agent
    from agent.policy_spec import PolicySpecError, make_policy, parse_spec
    from agent.safety import SafetyPolicy
    from agent.settings import Settings, SettingsError

    try:
        settings = Settings.load()
    except SettingsError as exc:
        raise UsageError(str(exc)) from exc
    if not args.task.strip():
        raise UsageError("the task is empty")
    max_steps = settings.max_steps if args.max_steps is None else args.max_steps
    if max_steps < 1:
        raise UsageError(f"--max-steps must be at least 1, got {max_steps}")

    from agent.extras import MissingExtraError

    try:
        scheme, target = parse_spec(args.policy)
        policy = make_policy(args.policy, settings)
    except (PolicySpecError, FileNotFoundError, ValueError, MissingExtraError) as exc:
        raise UsageError(str(exc)) from exc

    from agent.dialects import get_dialect

    try:
        dialect_name = resolve_dialect(args.dialect or settings.dialect, scheme, target, policy)
        dialect = get_dialect(
            dialect_name,
            history_n=settings.history_n,
            max_pixels=dialect_max_pixels(settings.max_pixels, scheme, target),
            language=settings.language,
        )
    except (KeyError, ValueError) as exc:
        raise UsageError(f"dialect: {exc}") from exc
    except RuntimeError as exc:  # RemoteError: the server could not say which model it runs
        if type(exc).__name__ != "RemoteError":
            raise
        raise UsageError(f"dialect: {exc}; or give --dialect") from exc

    try:
        env = build_env(args, settings)
    except Exception as exc:
        if type(exc).__name__ == "DisplayError" or isinstance(exc, UsageError):
            raise UsageError(str(exc)) from exc
        raise

    if args.yes:
        print(  # noqa: T201
            "WARNING: --yes confirms every risky action (closing windows, shell commands, "
            "everything after call_user) without asking.",
            file=sys.stderr,
        )
    safety = SafetyPolicy(
        args.safety or settings.safety,
        confirm=confirm_everything if args.yes else None,
        command_patterns=settings.safety_command_patterns,
    )
    max_new_tokens = settings.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens
    if max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    agent = Agent(
        policy,
        env,
        dialect,
        max_steps=max_steps,
        safety=safety,
        chat_options={"max_new_tokens": max_new_tokens},
    )

    recorder = None
    # --record DIR always records; otherwise the settings decide, unless --no-record.
    if args.record is not None or (settings.record and not args.no_record):
        from agent.trajectory import Recorder

        runs_dir = Path(args.record or settings.runs_dir).expanduser()
        recorder = Recorder(
            runs_dir,
            task=args.task,
            dialect=dialect.name,
            model=target,
            backend=scheme,
            monitors=monitor_dicts(env),
            extra={
                "safety": safety.level,
                "dry_run": args.dry_run,
                "max_steps": max_steps,
                "env": args.env,
            },
        )
        from agent.settings import remember_last_run

        remember_last_run(recorder.run_dir)  # `export last` finds it even under --record DIR

    with _stop_controls(agent, env, settings, args):
        try:
            for step in agent.run(args.task):
                if recorder is not None:
                    recorder.write_step(step)
                print_step(step)
        except BaseException as exc:
            if recorder is not None:
                recorder.finish("error", f"{type(exc).__name__}: {exc}")
            raise

    outcome, message = agent.outcome or "error", agent.final_message
    if recorder is not None:
        recorder.finish(outcome, message)
    print(f"outcome: {outcome}" + (f" - {message}" if message else ""))  # noqa: T201
    if recorder is not None:
        print(f"run folder: {recorder.run_dir}")  # noqa: T201
    return EXIT_FINISHED if outcome == "finished" else EXIT_NOT_FINISHED


class _stop_controls:
    """While the run lasts: the global kill-switch hotkey and Ctrl+C both stop the agent
    before its next action (a second Ctrl+C interrupts at once)."""

    def __init__(self, agent: Any, env: Any, settings: Any, args: argparse.Namespace):
        self.agent, self.env, self.settings, self.args = agent, env, settings, args
        self.kill_switch = None
        self._old_sigint = None

    def _stop(self) -> None:
        self.agent.stop()
        interrupt = getattr(self.env, "interrupt", None)
        if callable(interrupt):
            interrupt()  # cut a running `wait` short

    def _on_sigint(self, signum, frame) -> None:
        if self.agent.stopped:
            raise KeyboardInterrupt
        print("\nstopping before the next action (Ctrl+C again to abort)", file=sys.stderr)  # noqa: T201
        self._stop()

    def __enter__(self) -> _stop_controls:
        if self.args.env == "desktop":
            from agent.desktop import KillSwitch

            try:
                self.kill_switch = KillSwitch(self.settings.stop_hotkey, self._stop).start()
                print(f"kill switch: press {self.settings.stop_hotkey} to stop")  # noqa: T201
            except Exception as exc:  # the run can still be stopped with Ctrl+C
                log.warning("kill switch unavailable: %s", exc)
                print(f"WARNING: kill switch unavailable ({exc}); use Ctrl+C", file=sys.stderr)  # noqa: T201
        if threading.current_thread() is threading.main_thread():
            self._old_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._old_sigint is not None:
            signal.signal(signal.SIGINT, self._old_sigint)
        if self.kill_switch is not None:
            self.kill_switch.stop()
        close = getattr(self.env, "close", None)
        if callable(close):
            close()
