"""`deskpilot export RUN... --format F --out DIR`: recorded runs as fine-tuning data.

RUN may be a run folder, a run name in the runs folder, "last", or a folder of runs
(all of its runs). Formats and their layouts are described in agent/trajectory/export.py.
Bad samples are skipped with a warning on stderr and counted in the summary; beside
llamafactory and swift data goes a trainer config computed from the data, whose values
are printed (agent/trajectory/trainer_configs.py).
"""

from __future__ import annotations

import argparse
import logging
import sys

from app.commands.common import EXIT_USAGE, setup_logging

EXIT_OK, EXIT_NOTHING = 0, 1


def build_parser() -> argparse.ArgumentParser:
    from agent.trajectory.export import COORDS, FORMATS

    p = argparse.ArgumentParser(
        prog="deskpilot export",
        description="Export recorded runs as training data: the exact prompts the model saw "
        "and its replies as targets.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders, run names, 'last', or folders of runs")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt",
                   help="llamafactory (ShareGPT + dataset_info.json + llamafactory_sft.yaml), "
                   "swift (ms-swift JSONL + swift_sft.yaml), qwenvl (Qwen-VL finetune JSON) "
                   "or uitars (messages with loss_mask); the .yaml configs carry the data "
                   "settings computed from the export and are printed")
    p.add_argument("--out", required=True, help="output folder (images go to OUT/images/)")
    p.add_argument("--only-success", action="store_true",
                   help="only runs whose outcome is 'finished'")
    p.add_argument("--per-run", action="store_true",
                   help="one sample per run (its whole conversation, every reply a target) "
                   "instead of one per step. Failed replies are never targets: the run is "
                   "SPLIT at each step whose reply failed to parse, each stretch of good "
                   "steps becomes its own sample, and what came before it (the failed reply "
                   "and its feedback included) is context that is not trained")
    p.add_argument("--coords", choices=COORDS, default="keep",
                   help="one coordinate convention for every reply, history and target: "
                   "as the model wrote them (keep, default), absolute model-image pixels "
                   "(Qwen2.5-VL, UI-TARS-1.5) or relative1000 (0..1000: UI-TARS-1.0, "
                   "Qwen3-VL); replies are written as the dialect shows them to the model")
    p.add_argument("--name", default="deskpilot", help="dataset name (file name and "
                   "dataset_info.json key); default deskpilot")
    p.add_argument("--tokenizer", metavar="CKPT", default=None,
                   help="checkpoint folder whose tokenizer counts the tokens for the trainer "
                   "config's cutoff_len / max_length exactly (default: the runs' own checkpoint "
                   "when it is a local folder, else an upper bound)")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, verbose_level=logging.INFO)
    from agent.settings import Settings, SettingsError
    from agent.trajectory import FormatError
    from agent.trajectory.export import export_runs
    from agent.trajectory.loader import expand_run_paths

    try:
        settings = Settings.load()
        paths = expand_run_paths(args.runs, settings.runs_dir)
        result = export_runs(paths, args.fmt, args.out, only_success=args.only_success,
                             per_run=args.per_run, coords=args.coords, dataset_name=args.name,
                             tokenizer=args.tokenizer)
    except (SettingsError, FormatError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"deskpilot export: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)  # noqa: T201
    for skipped in result.skipped_runs:
        print(f"skipped {skipped}", file=sys.stderr)  # noqa: T201
    print(  # noqa: T201
        f"{result.samples} samples from {result.runs} runs ({result.images} images, "
        f"{result.skipped_steps} steps without a usable reply skipped, "
        f"{result.skipped_samples} bad samples skipped) -> "
        + ", ".join(str(f) for f in result.files)
    )
    for path, values in result.configs.items():
        print(f"trainer config {path}:")  # noqa: T201
        for key in CONFIG_KEYS:
            if key in values:
                print(f"  {key}: {_show(values[key])}")  # noqa: T201
    return EXIT_OK if result.samples else EXIT_NOTHING


# The data settings of the trainer configs (the rest are ordinary training defaults).
CONFIG_KEYS = ("template", "cutoff_len", "max_length", "image_max_pixels", "image_min_pixels",
               "max_pixels", "mask_history", "dataset", "dataset_dir", "media_dir", "ENV")


def _show(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
