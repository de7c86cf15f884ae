"""`deskpilot train plan`: the memory a fine-tuning run needs, whether it fits, what to change.

Pure Python (train.plan): it reads safetensors headers or config.json, never the weights, so
it answers in well under a second even for a 60 GB checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.commands.common import EXIT_USAGE
from train.plan import (
    GIB,
    PlanError,
    count_parameters,
    detect_available_memory,
    format_plan,
    plan_memory,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deskpilot train plan",
        description="Estimate the memory of a fine-tuning run (weights, gradients, optimizer "
                    "states, activations with and without checkpointing) and whether it fits; "
                    "also the weights for inference in bf16 and in block-wise fp8.")
    p.add_argument("--base", required=True,
                   help="checkpoint folder, downloaded hub id, or a config name under "
                        "assets/configs (e.g. qwen3-vl-30b-a3b)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--lora-rank", type=int, metavar="R", help="LoRA of rank R")
    mode.add_argument("--full", action="store_true", help="full fine-tuning")
    p.add_argument("--pack-tokens", type=int, default=4096, metavar="T",
                   help="tokens per packed row (default 4096)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute each layer's activations in the backward pass")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16",
                   help="training precision (default bf16, with fp32 master weights)")
    p.add_argument("--train-vision", action="store_true", help="also train the vision tower")
    p.add_argument("--gpu-memory", type=float, metavar="GiB",
                   help="memory of the GPU to plan for (default: the detected GPU)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="GPUs the run is sharded over (FSDP/ZeRO-3; default 1)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.lora_rank is not None and args.lora_rank < 1:
        print("deskpilot train plan: --lora-rank must be >= 1", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if args.pack_tokens < 1 or args.nproc < 1:
        print("deskpilot train plan: --pack-tokens and --nproc must be >= 1",  # noqa: T201
              file=sys.stderr)
        return EXIT_USAGE
    try:
        count, config = count_parameters(args.base)
    except PlanError as e:
        print(f"deskpilot train plan: {e}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if args.gpu_memory is not None:
        available, source = int(args.gpu_memory * GIB), f"--gpu-memory {args.gpu_memory:g}"
    else:
        available, source = detect_available_memory()
    plan = plan_memory(
        count, config, mode="full" if args.full else "lora", dtype=args.dtype,
        lora_rank=args.lora_rank or 16, train_vision=args.train_vision,
        tokens=args.pack_tokens, grad_checkpointing=args.grad_checkpointing,
        available_bytes=available, world_size=args.nproc)
    if args.json:
        print(json.dumps({**plan.to_dict(), "available_source": source}, indent=2))  # noqa: T201
    else:
        print(f"{args.base}  (memory: {source})")  # noqa: T201
        print(format_plan(plan))  # noqa: T201
    return 0
