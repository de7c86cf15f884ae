"""`deskpilot train dpo PAIRS_OR_RUNS... --base CKPT --out DIR [--lora-rank R | --full] [--beta B]`.

Preference tuning (DPO) on chosen/rejected replies: a pairs JSONL (schema in
train/dpo_data.py), or agent runs together with the `record-demo` demonstrations that
corrected them. Same outputs as `train sft`: DIR/adapter/ (LoRA), DIR/merged/ (with --merge,
always with --full), DIR/train_log.jsonl, DIR/train_args.json. The training is train/dpo.py;
this module parses, reports and maps errors to exit codes (2: bad input, 1: the run failed,
130: stopped with Ctrl+C, resumable).
"""

from __future__ import annotations

import argparse
import logging
import sys

from app.commands.common import EXIT_USAGE, setup_logging
from app.commands.train_sft import EXIT_INTERRUPTED, EXIT_OK, DefaultsFormatter, ProgressBar


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deskpilot train dpo",
        description="Preference-tune the model (DPO): prefer each chosen reply over its "
        "rejected one, relative to the frozen base. Inputs: pairs .jsonl files (messages, "
        "chosen, rejected; images by path relative to the file), or agent runs plus the "
        "record-demo demonstrations that corrected them (the model's proposed action "
        "rejected, the person's first action chosen).",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="PAIRS_OR_RUNS",
                   help="pairs .jsonl files, run folders, run names, folders of runs")
    p.add_argument("--base", required=True, metavar="CKPT",
                   help="the model to tune (and the reference): a checkpoint folder or hub id")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--lora-rank", type=int, metavar="R",
                     help="train LoRA adapters of rank R (the reference is the base with the "
                     "adapters disabled)")
    how.add_argument("--full", action="store_true", help="train every weight")
    p.add_argument("--beta", type=float, default=0.1, metavar="B",
                   help="DPO temperature: how far the model may move from the base")
    p.add_argument("--merge", action="store_true",
                   help="with LoRA, also write DIR/merged/ (base + adapter folded together)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, metavar="N", help="optimizer steps (default: "
                        "from --epochs)")
    length.add_argument("--epochs", type=float, default=3.0, metavar="E",
                        help="passes over the pairs")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="peak learning rate (default: 5e-5 with LoRA, 1e-6 with --full)")
    p.add_argument("--device", default="auto", metavar="D",
                   help="cuda, cuda:N, cpu or auto (CUDA when present)")
    p.add_argument("--pack-tokens", type=int, default=16384, metavar="T",
                   help="most tokens of one pair (chosen + rejected, packed without padding)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute activations per decoder layer and ViT block")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32", "auto"), default="auto",
                   help="compute dtype; auto: bf16 on GPUs that have it, else fp16; fp32 on "
                   "CPU")
    p.add_argument("--train-vision", action="store_true",
                   help="also train the vision tower and merger (frozen by default)")
    p.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.pt exactly where it stopped")
    extra = p.add_argument_group("more options")
    extra.add_argument("--lora-alpha", type=float, metavar="A",
                       help="LoRA alpha (default: 16; adapters scale by alpha/sqrt(rank), rsLoRA)")
    extra.add_argument("--lora-dropout", type=float, default=0.05, metavar="P",
                       help="LoRA dropout")
    extra.add_argument("--accumulate", type=int, default=1, metavar="K",
                       help="pairs per optimizer step")
    extra.add_argument("--warmup", type=int, metavar="N",
                       help="linear warmup steps (default: 5%% of the steps), then cosine")
    extra.add_argument("--save-every", type=int, default=50, metavar="N",
                       help="steps between checkpoints (0: only at the end and on Ctrl+C)")
    extra.add_argument("--max-grad-norm", type=float, default=1.0, metavar="G",
                       help="gradient clipping (0: off)")
    extra.add_argument("--weight-decay", type=float, default=0.0, metavar="W",
                       help="AdamW weight decay")
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
    from train.dpo import DpoOptions, run_dpo
    from train.loop import Interrupted
    from train.sft import TrainError

    opts = DpoOptions(
        inputs=args.inputs, base=args.base, out=args.out, lora_rank=args.lora_rank,
        full=args.full, merge=args.merge, steps=args.steps, epochs=args.epochs, lr=args.lr,
        device=args.device, pack_tokens=args.pack_tokens,
        grad_checkpointing=args.grad_checkpointing, dtype=args.dtype,
        train_vision=args.train_vision, resume=args.resume, lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout, accumulate=args.accumulate, warmup=args.warmup,
        seed=args.seed, save_every=args.save_every, max_grad_norm=args.max_grad_norm,
        weight_decay=args.weight_decay, memory_check=args.memory_check, beta=args.beta,
    )
    bar = ProgressBar()
    try:
        summary = run_dpo(opts, on_step=bar.update)
    except (TrainError, SettingsError, ValueError, FileNotFoundError) as exc:
        bar.close()
        print(f"deskpilot train dpo: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except Interrupted as exc:
        bar.close()
        print(f"deskpilot train dpo: {exc}; continue with the same command and --resume",  # noqa: T201
              file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.close()
    last = summary["last_loss"]
    print(f"trained {summary['steps']} DPO steps on {summary['pairs']} pairs"  # noqa: T201
          + (f", last loss {last:.4f}, margin {summary['last_margin']:.4f}"
             if last is not None else " (already complete)"))
    for key in ("adapter", "merged"):
        if key in summary:
            print(f"{key}: {summary[key]}")  # noqa: T201
    print(f"log: {summary['log']}")  # noqa: T201
    return EXIT_OK
