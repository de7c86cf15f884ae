"""`torchrun --nproc-per-node N -m train {sft,dpo} ...`: the training command lines on N ranks.

Each rank torchrun starts runs the same `deskpilot train sft|dpo` command line (the same
flags, parsed by the same app/commands module) after joining the process group
(train/distributed.py: DDP, gloo on CPU, nccl on CUDA). Only rank 0 writes DIR/ and prints
the summary; the other ranks' standard output is discarded (their errors still reach
stderr). `python -m train ...` without torchrun is one ordinary process.

The app's command modules are imported only when this runs as the program (never when the
`train` package is imported), so `train` stays below `app` in the import order.
"""

from __future__ import annotations

import os
import sys

METHODS = ("sft", "dpo")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in METHODS:
        usage = (f"usage: torchrun --nproc-per-node N -m train {{{','.join(METHODS)}}} "
                 "ARGS...\n  the arguments of `deskpilot train sft` / `deskpilot train dpo`")
        print(usage, file=sys.stderr)  # noqa: T201 - the CLI's own output
        return 2
    from train import distributed as D

    D.init(cpu=device_flag(argv) == "cpu")
    try:
        if not D.is_main():
            sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - to exit
        from app.commands import train as train_command

        code = train_command.main(argv)
    finally:
        D.shutdown()
    return code


def device_flag(argv: list[str]) -> str:
    """The value of --device in a command line ("auto" when absent)."""
    for k, arg in enumerate(argv):
        if arg == "--device" and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith("--device="):
            return arg.split("=", 1)[1]
    return "auto"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
