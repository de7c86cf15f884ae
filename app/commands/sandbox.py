"""`deskpilot sandbox [--task-seed N] [--state-file PATH]`: open the practice window.

Without a seed: the sandbox with one target per action type. With `--task-seed N`:
practice task N (agent/tasks), its instruction in the window title."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="deskpilot sandbox",
        description="Open a practice window to point the agent at safely.",
    )
    parser.add_argument("--state-file", metavar="PATH",
                        help="write the window's state as JSON to PATH after every change")
    parser.add_argument("--task-seed", type=int, metavar="N",
                        help="show practice task N (a non-negative integer) instead")
    parser.add_argument("--difficulty", type=int, choices=range(4), metavar="0-3",
                        help="with --task-seed: the task's difficulty (default: from the seed)")
    args = parser.parse_args(argv)
    if args.difficulty is not None and args.task_seed is None:
        parser.error("--difficulty needs --task-seed")
    if args.task_seed is not None and args.task_seed < 0:
        parser.error(f"--task-seed must be a non-negative integer, got {args.task_seed}")
    headless = os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal")
    if (sys.platform.startswith("linux") and not headless
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
        # Qt would abort the process with a core dump; say what to do instead.
        print("deskpilot sandbox: no display (DISPLAY is not set): run it inside a desktop "  # noqa: T201
              "session, or under a virtual one such as `xvfb-run deskpilot sandbox`",
              file=sys.stderr)
        return 2
    from app.sandbox import run

    return run(args.state_file, args.task_seed, args.difficulty)
