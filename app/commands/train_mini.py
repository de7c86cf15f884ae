"""`deskpilot train mini --out DIR`: build and train deskpilot-mini, the embedded default model.

The whole recipe (a randomly initialised small Qwen3-VL-MoE with its own tokenizer, then
"read the screen", single-step and multi-step stages on practice tasks rendered offscreen,
with an evaluation on held-out seeds after each stage) is train/mini.py; this module gives
it the offscreen Qt screens it renders on, parses, reports and maps errors to exit codes
(2: bad input, 1: the run failed, 130: stopped with Ctrl+C, resumable with --resume).

On a shared CPU run it as `nice -n 19 deskpilot train mini --out DIR` (one torch thread by
default). The final checkpoint is DIR/model/; the learning curve DIR/curve.jsonl.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from app.commands.common import EXIT_USAGE, setup_logging
from app.commands.train_sft import ProgressBar

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deskpilot train mini",
        description="Build deskpilot-mini from scratch and train it on the practice tasks "
        "(rendered offscreen); DIR/model/ is the checkpoint, DIR/curve.jsonl its learning "
        "curve on held-out seeds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--scale", type=float, default=1.0, metavar="S",
                   help="multiplies every stage's tasks and steps (0.25: a quick run)")
    p.add_argument("--shape", choices=("mini", "tiny"), default="mini",
                   help="model size: mini (the shipped one, ~5M parameters) or tiny (tests)")
    p.add_argument("--eval-seeds", default="0-19", metavar="SEEDS",
                   help="held-out practice seeds evaluated after each stage ('' : none)")
    p.add_argument("--eval-screen", default="1280x800", metavar="WxH",
                   help="screen size of the evaluation (1280x800 or 1920x1080)")
    p.add_argument("--eval-max-steps", type=int, default=6, metavar="N",
                   help="step limit per evaluated task")
    p.add_argument("--eval-max-new-tokens", type=int, default=96, metavar="N",
                   help="longest reply per evaluated step, in tokens")
    p.add_argument("--pack-tokens", type=int, default=4096, metavar="T",
                   help="tokens per packed row")
    p.add_argument("--accumulate", type=int, default=1, metavar="K",
                   help="packed rows per optimizer step")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (1 keeps a shared machine usable)")
    p.add_argument("--device", default="cpu", metavar="D", help="cpu or cuda")
    p.add_argument("--save-every", type=int, default=25, metavar="N",
                   help="steps between resumable checkpoints")
    p.add_argument("--seed", type=int, default=0, help="initialisation, data and order")
    p.add_argument("--resume", action="store_true",
                   help="continue where DIR stopped (finished stages are kept)")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, verbose_level=logging.INFO)
    from agent.tasks import parse_seeds
    from train.data import DataError
    from train.loop import Interrupted
    from train.mini import MiniError, MiniOptions, run_mini

    try:
        seeds = parse_seeds(args.eval_seeds) if args.eval_seeds.strip() else []
    except ValueError as exc:
        print(f"deskpilot train mini: --eval-seeds: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if args.scale <= 0:
        print("deskpilot train mini: --scale must be > 0", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    width, sep, height = args.eval_screen.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        print(f"deskpilot train mini: --eval-screen must look like 1280x800, got "  # noqa: T201
              f"{args.eval_screen!r}", file=sys.stderr)
        return EXIT_USAGE
    opts = MiniOptions(out=args.out, shape=args.shape, scale=args.scale, eval_seeds=seeds,
                       eval_screen=(int(width), int(height)),
                       eval_max_steps=args.eval_max_steps,
                       eval_max_new_tokens=args.eval_max_new_tokens,
                       pack_tokens=args.pack_tokens, accumulate=args.accumulate,
                       threads=args.threads, device=args.device, save_every=args.save_every,
                       seed=args.seed, resume=args.resume)
    bar = StageProgress()
    try:
        summary = run_mini(opts, open_env=_open_env, open_screen=_open_screen,
                           on_step=bar.update)
    except (MiniError, DataError, ValueError, FileNotFoundError) as exc:
        bar.close()
        print(f"deskpilot train mini: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except Interrupted as exc:
        bar.close()
        print(f"deskpilot train mini: {exc}; continue with the same command and --resume",  # noqa: T201
              file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.close()
    for point in summary["stages"]:
        print(json.dumps(point))  # noqa: T201 - the command's result
    print(f"model: {summary['model']}")  # noqa: T201
    print(f"curve: {summary['curve']}")  # noqa: T201
    return EXIT_OK


def _open_env(task, screen_size):
    from app.offscreen_env import OffscreenTaskEnv

    return OffscreenTaskEnv(task, screen_size)


def _open_screen(task, screen_size):
    from app.task_screens import OffscreenTaskScreen

    return OffscreenTaskScreen(task, screen_size)


class StageProgress:
    """One progress bar per stage (each stage counts its steps from 1)."""

    def __init__(self):
        self._bar, self._last = ProgressBar(), 0

    def update(self, record: dict) -> None:
        if record["step"] <= self._last:
            self._bar.close()
            self._bar = ProgressBar()
        self._last = record["step"]
        self._bar.update(record)

    def close(self) -> None:
        self._bar.close()
