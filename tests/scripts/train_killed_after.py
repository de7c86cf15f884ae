"""`torchrun ... tests/scripts/train_killed_after.py K sft ARGS...`: `-m train sft ARGS...`
whose ranks all die abruptly (os._exit, as under a SIGKILL: no checkpoint on the way out,
no cleanup) when K optimizer steps are done, so all that survives is the last periodic
checkpoint (--save-every). The ranks meet at a barrier first, so rank 0 has finished
writing that checkpoint: the kill lands between steps, not inside the atomic rename."""

import os
import sys

import torch

from train import __main__ as train_main
from train import loop

KILLED = 137  # what a shell reports for SIGKILL


def main(argv: list[str]) -> int:
    stop, rest = int(argv[0]), argv[1:]
    real_step = loop.one_step

    def dying_step(stepper, rows, step, *args, **kwargs):
        if step == stop:
            if torch.distributed.is_initialized():
                torch.distributed.barrier()
            os._exit(KILLED)
        return real_step(stepper, rows, step, *args, **kwargs)

    loop.one_step = dying_step
    return train_main.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
