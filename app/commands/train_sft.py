"""`deskpilot train sft RUN_OR_DATASET... --base CKPT --out DIR (--lora-rank R | --full)`.

Fine-tunes the model on recorded runs (agent runs and demonstrations; a folder of runs is
expanded) or LLaMA-Factory sharegpt JSON files, and writes DIR/adapter/ (LoRA), DIR/merged/
(with --merge, always with --full), DIR/train_log.jsonl and DIR/train_args.json. The
training itself is train/sft.py; this module only parses, reports and maps errors to exit
codes (2: bad input, 1: the run failed, 130: stopped with Ctrl+C, resumable).
"""

from __future__ import annotations

import argparse
import logging
import sys

from app.commands.common import EXIT_USAGE, setup_logging

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one and the help text does not state it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deskpilot train sft",
        description="Fine-tune the model on your recorded runs (or a LLaMA-Factory sharegpt "
        "JSON), then load DIR/merged (or the base + DIR/adapter) as the model.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_DATASET",
                   help="run folders, run names, 'last', folders of runs, or sharegpt .json")
    p.add_argument("--base", required=True, metavar="CKPT",
                   help="the model to fine-tune: a checkpoint folder or hub id")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--lora-rank", type=int, metavar="R",
                     help="train LoRA adapters of rank R (8-64 is typical; 16 is a good start)")
    how.add_argument("--full", action="store_true", help="train every weight (needs far "
                     "more memory; see `deskpilot train plan`)")
    p.add_argument("--merge", action="store_true",
                   help="with LoRA, also write DIR/merged/ (base + adapter folded together)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, metavar="N", help="optimizer steps (default: "
                        "from --epochs)")
    length.add_argument("--epochs", type=float, default=3.0, metavar="E",
                        help="passes over the data")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="peak learning rate (default: 2e-4 with LoRA, 1e-5 with --full)")
    p.add_argument("--device", default="auto", metavar="D",
                   help="cuda, cuda:N, cpu or auto (CUDA when present)")
    p.add_argument("--pack-tokens", type=int, default=16384, metavar="T",
                   help="tokens per packed row (samples are packed without padding)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute activations per decoder layer and ViT block in the "
                   "backward pass (less memory, one more forward per step)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32", "auto"), default="auto",
                   help="compute dtype; auto: bf16 on GPUs that have it, else fp16 (with a "
                   "grad scaler); fp32 on CPU. Trainable weights keep fp32 master copies")
    p.add_argument("--train-vision", action="store_true",
                   help="also train the vision tower and merger (frozen by default)")
    p.add_argument("--only-success", action="store_true",
                   help="only runs whose outcome is 'finished'")
    p.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.pt exactly where it stopped")
    extra = p.add_argument_group("more options")
    extra.add_argument("--lora-alpha", type=float, metavar="A",
                       help="LoRA alpha (default: 16; adapters scale by alpha/sqrt(rank), rsLoRA)")
    extra.add_argument("--lora-dropout", type=float, default=0.05, metavar="P",
                       help="LoRA dropout")
    extra.add_argument("--accumulate", type=int, default=1, metavar="K",
                       help="packed rows per optimizer step (gradient accumulation)")
    extra.add_argument("--warmup", type=int, metavar="N",
                       help="linear warmup steps (default: 5%% of the steps), then cosine")
    extra.add_argument("--save-every", type=int, default=50, metavar="N",
                       help="steps between checkpoints (0: only at the end and on Ctrl+C)")
    extra.add_argument("--max-grad-norm", type=float, default=1.0, metavar="G",
                       help="gradient clipping (0: off)")
    extra.add_argument("--weight-decay", type=float, default=0.0, metavar="W",
                       help="AdamW weight decay")
    extra.add_argument("--router-aux-coef", type=float, default=0.0, metavar="C",
                       help="weight of the MoE load-balancing loss (0: off)")
    extra.add_argument("--seed", type=int, default=0, help="data order, init and dropout")
    extra.add_argument("--no-memory-check", dest="memory_check", action="store_false",
                       help="train even when the memory plan (`deskpilot train plan`) says "
                       "the base does not fit this device")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, verbose_level=logging.INFO)
    from agent.settings import SettingsError
    from train.loop import Interrupted
    from train.sft import SftOptions, TrainError, run_sft

    opts = SftOptions(
        inputs=args.inputs, base=args.base, out=args.out, lora_rank=args.lora_rank,
        full=args.full, merge=args.merge, steps=args.steps, epochs=args.epochs, lr=args.lr,
        device=args.device, pack_tokens=args.pack_tokens,
        grad_checkpointing=args.grad_checkpointing, dtype=args.dtype,
        train_vision=args.train_vision, only_success=args.only_success, resume=args.resume,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        accumulate=args.accumulate, warmup=args.warmup, seed=args.seed,
        save_every=args.save_every, max_grad_norm=args.max_grad_norm,
        weight_decay=args.weight_decay, router_aux_coef=args.router_aux_coef,
        memory_check=args.memory_check,
    )
    bar = ProgressBar()
    try:
        summary = run_sft(opts, on_step=bar.update)
    except (TrainError, SettingsError, ValueError, FileNotFoundError) as exc:
        bar.close()
        print(f"deskpilot train sft: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except Interrupted as exc:
        bar.close()
        print(f"deskpilot train sft: {exc}; continue with the same command and --resume",  # noqa: T201
              file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.close()
    last = summary["last_loss"]
    print(f"trained {summary['steps']} steps on {summary['samples']} samples "  # noqa: T201
          f"({summary['rows']} packed rows)"
          + (f", last loss {last:.4f}" if last is not None else " (already complete)"))
    for key in ("adapter", "merged"):
        if key in summary:
            print(f"{key}: {summary[key]}")  # noqa: T201
    print(f"log: {summary['log']}")  # noqa: T201
    return EXIT_OK


class ProgressBar:
    """tqdm on stderr: loss, tokens/s and the ETA, created at the first step."""

    def __init__(self):
        self._bar = None

    def update(self, record: dict) -> None:
        if self._bar is None:
            from tqdm import tqdm

            total = record.get("total_steps")
            self._bar = tqdm(total=total, initial=record["step"] - 1, unit="step",
                             file=sys.stderr, dynamic_ncols=True)
        self._bar.set_postfix(loss=f"{record['loss']:.4f}",
                              tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
