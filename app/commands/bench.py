"""`deskpilot bench step ...` (vlm.bench), `deskpilot bench kernels ...` (kernels.bench) and
`deskpilot bench train ...` (train.bench)."""

from __future__ import annotations

import importlib
import sys

TARGETS = {
    "step": ("vlm.bench", "one agent step: preprocess, vision, prefill, decode (+ prefix reuse)"),
    "kernels": ("kernels.bench", "kernel timings against their PyTorch references"),
    "train": ("train.bench", "training tokens/s packed vs padded, checkpointing's memory"),
}


def usage() -> str:
    lines = ["usage: deskpilot bench {step,kernels,train} [ARGS...]", ""]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in TARGETS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())  # noqa: T201 - the CLI's own output
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in TARGETS:
        print(f"deskpilot bench: unknown benchmark {name!r}\n\n{usage()}",  # noqa: T201
              file=sys.stderr)
        return 2
    module = importlib.import_module(TARGETS[name][0])
    return int(module.main(rest) or 0)
