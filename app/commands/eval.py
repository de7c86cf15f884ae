"""`deskpilot eval tasks|grounding`: measure a policy on the practice suite or ScreenSpot.

    deskpilot eval tasks --seeds 0-49 [--policy P] [--json OUT] [--report HTML]
                         [--max-steps N] [--env desktop|offscreen] [--screen WxH]
                         [--difficulty 0-3] [--runs DIR] [--dialect D]
    deskpilot eval grounding DATA.json [--policy P] [--json OUT] [--images DIR]
                         [--format screenspot|screenspot-v2|screenspot-pro]

The policy is `expert` (the scripted expert; tasks only), local:PATH, remote:URL,
script:FILE or replay:RUN, and defaults to the model configured in the settings. The
summary JSON is printed on stdout (and written to --json); progress goes to stderr.
A task counts as a success when its checker passes and the run ended "finished".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from app.commands.common import EXIT_USAGE, UsageError, setup_logging
from app.task_screens import SandboxStartError

log = logging.getLogger("deskpilot.eval")
DEFAULT_MAX_STEPS = 15  # practice tasks take at most 6 steps; a lost model stops soon
EXPERT = "expert"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deskpilot eval",
                                description="Measure a policy on practice tasks or ScreenSpot.")
    sub = p.add_subparsers(dest="what", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--policy", help="expert (tasks only), local:PATH, remote:URL, "
                       "script:FILE or replay:RUN (default: the configured model)")
        q.add_argument("--dialect", help="uitars-1.5, uitars-1.0, qwen3-vl or auto")
        q.add_argument("--json", metavar="OUT", help="also write the summary JSON here")
        q.add_argument("--max-new-tokens", type=int, default=512,
                       help="longest reply per step, in tokens")
        q.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")

    t = sub.add_parser("tasks", help="task success over practice task seeds")
    t.add_argument("--seeds", required=True, help="seeds, e.g. 0-49 or 3,7,10-12")
    common(t)
    t.add_argument("--report", metavar="HTML", help="write an HTML report of the evaluation")
    t.add_argument("--difficulty", type=int, choices=range(4), metavar="0-3",
                   help="every task at this difficulty (default: drawn from each seed)")
    t.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                   help=f"step limit per task (default {DEFAULT_MAX_STEPS})")
    t.add_argument("--env", choices=("desktop", "offscreen"), default="desktop",
                   help="the real screen (DISPLAY), or an in-process offscreen window")
    t.add_argument("--screen", default="1280x800", metavar="WxH",
                   help="screen size of the offscreen env (default 1280x800)")
    t.add_argument("--runs", metavar="DIR", help="where the runs go (default: settings)")
    t.add_argument("--monitor", help="'auto' or a monitor index (desktop env)")
    t.add_argument("--settle-timeout", type=float, metavar="S",
                   help="max seconds to wait for the screen to settle (desktop env)")

    g = sub.add_parser("grounding", help="click accuracy on ScreenSpot-format data")
    g.add_argument("data", metavar="DATA.json", help="ScreenSpot / -v2 / -Pro annotations")
    common(g)
    g.add_argument("--images", metavar="DIR",
                   help="folder of the images (default: next to DATA.json, or its images/)")
    g.add_argument("--format", choices=("screenspot", "screenspot-v2", "screenspot-pro"),
                   help="annotation format (default: detected)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    result = sys.stdout
    try:
        # stdout carries the summary JSON only: libraries that print (python-xlib warns
        # about X authority on stdout) are sent to stderr meanwhile.
        with contextlib.redirect_stdout(sys.stderr):
            summary = _tasks(args) if args.what == "tasks" else _grounding(args)
    except UsageError as exc:
        print(f"deskpilot eval: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except SandboxStartError as exc:  # the practice window did not come up
        print(f"deskpilot eval: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    _emit(summary, args.json, result)
    return 0


# --- shared -------------------------------------------------------------------------------


def _settings():
    from agent.settings import Settings, SettingsError

    try:
        return Settings.load()
    except SettingsError as exc:
        raise UsageError(str(exc)) from exc


def configured_policy(settings: Any) -> str:
    """The policy spec of the model the settings name."""
    if settings.backend == "remote" and settings.remote_url:
        return f"remote:{settings.remote_url}"
    if settings.model:
        return f"local:{settings.model}"
    raise UsageError("no model is configured: pass --policy (expert, local:PATH, remote:URL, "
                     "script:FILE or replay:RUN) or choose a model in the app")


def _build_policy(spec: str, settings: Any):
    from agent.policy_spec import PolicySpecError, make_policy, parse_spec

    try:
        scheme, target = parse_spec(spec)
        return scheme, target, make_policy(spec, settings)
    except (PolicySpecError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def _dialect(args: argparse.Namespace, settings: Any, scheme: str, target: str, policy: Any):
    from agent.dialects import get_dialect
    from app.commands.run import dialect_max_pixels, resolve_dialect

    try:
        name = resolve_dialect(args.dialect or settings.dialect, scheme, target, policy)
        return get_dialect(name, history_n=settings.history_n,
                           max_pixels=dialect_max_pixels(settings.max_pixels, scheme, target),
                           language=settings.language)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"dialect: {exc}") from exc


def _emit(summary: dict, out: str | None, stream) -> None:
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    if out:
        path = Path(out).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    print(text, file=stream, flush=True)  # noqa: T201 - the command's result


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # noqa: T201 - progress, beside the JSON


# --- tasks --------------------------------------------------------------------------------


def _screen_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 320 \
            or int(height) < 240:
        raise UsageError(f"--screen must look like 1280x800 (at least 320x240), got {text!r}")
    return int(width), int(height)


def _tasks(args: argparse.Namespace) -> dict:
    from agent.eval import evaluate_tasks, tasks_report_html
    from agent.safety import SafetyPolicy
    from agent.tasks import ExpertPolicy, parse_seeds

    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        raise UsageError(f"--seeds: {exc}") from exc
    if args.max_steps < 1:
        raise UsageError(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    settings = _settings()
    spec = args.policy or configured_policy(settings)

    if spec == EXPERT:
        scheme, target, shared = EXPERT, EXPERT, None
    else:
        scheme, target, shared = _build_policy(spec, settings)
    dialect = _dialect(args, settings, "script" if scheme == EXPERT else scheme, target, shared)
    per_task = scheme in (EXPERT, "script", "replay")  # stateful: a fresh one per task

    def make_policy(task, screen, tracker):
        if scheme == EXPERT:
            return ExpertPolicy(task, dialect, screen.read_state, tracker.latest_frame)
        if per_task:
            return _build_policy(spec, settings)[2]
        return shared

    open_screen, settle_wait = _screen_opener(args, settings)
    runs_dir = Path(args.runs or settings.runs_dir).expanduser()

    def report(result) -> None:
        verdict = "solved" if result.success else "FAILED"
        why = f" ({'; '.join(result.failures)})" if result.failures else ""
        _progress(f"seed {result.seed} [{result.skill}, {result.kind}]: {verdict} in "
                  f"{result.steps} steps, {result.seconds_per_step:.3f} s/step{why} -> "
                  f"{result.run}")

    summary, results = evaluate_tasks(
        seeds, open_screen=open_screen, make_policy=make_policy, dialect=dialect,
        on_result=report, difficulty=args.difficulty, runs_dir=runs_dir, model=target,
        backend=scheme,
        max_steps=args.max_steps,
        safety=SafetyPolicy(settings.safety, command_patterns=settings.safety_command_patterns),
        env_name=args.env, settle_wait=settle_wait,
        chat_options={"max_new_tokens": args.max_new_tokens},
    )
    if args.report:
        path = Path(args.report).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tasks_report_html(results), encoding="utf-8")
        _progress(f"report: {path}")
    _progress(f"success rate: {summary['success_rate']:.1%} over {len(results)} tasks")
    return summary


def _screen_opener(args: argparse.Namespace, settings: Any):
    """open_screen(task) for the chosen env, and how long to let its state settle."""
    if args.env == "offscreen":
        size = _screen_size(args.screen)
        from app.task_screens import OffscreenTaskScreen

        return (lambda task: OffscreenTaskScreen(task, size)), 0.0
    from agent.desktop.errors import DisplayError
    from agent.desktop.monitors import require_display
    from app.task_screens import DesktopTaskScreen

    try:
        require_display()
    except DisplayError as exc:
        raise UsageError(f"{exc} (or evaluate without a display: --env offscreen)") from exc
    monitor = args.monitor if args.monitor is not None else settings.monitor
    if isinstance(monitor, str) and monitor != "auto":
        if not monitor.isdigit():
            raise UsageError(f"--monitor must be 'auto' or an index, got {monitor!r}")
        monitor = int(monitor)
    settle = settings.settle_timeout if args.settle_timeout is None else args.settle_timeout
    if settle < 0:
        raise UsageError(f"--settle-timeout must be >= 0, got {settle}")
    return (lambda task: DesktopTaskScreen(task, monitor=monitor, settle_timeout=settle,
                                           settle_threshold=settings.settle_threshold,
                                           difficulty=args.difficulty)), 1.0


# --- grounding ----------------------------------------------------------------------------


def _grounding(args: argparse.Namespace) -> dict:
    from agent.eval import GroundingFormatError, evaluate_grounding, load_grounding

    if args.policy == EXPERT:
        raise UsageError("the expert reads task layouts, not screenshots: choose local:, "
                         "remote:, script: or replay: for grounding")
    data = Path(args.data).expanduser()
    try:
        samples = load_grounding(data, args.format)
    except GroundingFormatError as exc:
        raise UsageError(str(exc)) from exc
    folders = ([Path(args.images).expanduser()] if args.images
               else [data.parent, data.parent / "images"])
    settings = _settings()
    spec = args.policy or configured_policy(settings)
    scheme, target, policy = _build_policy(spec, settings)
    dialect = _dialect(args, settings, scheme, target, policy)

    def report(record: dict) -> None:
        where = "miss" if not record["hit"] else "hit"
        _progress(f"sample {record['index']} [{record['platform']}/{record['data_type']}]: "
                  f"{where}" + (f" ({record['error']})" if record["error"] else ""))

    try:
        summary = evaluate_grounding(samples, policy, dialect, folders,
                                     chat_options={"max_new_tokens": args.max_new_tokens},
                                     on_sample=report)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    _progress(f"accuracy: {summary['accuracy']:.1%} ({summary['correct']} of "
              f"{summary['total']})")
    return summary


