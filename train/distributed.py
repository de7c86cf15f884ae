"""Scale-out through torchrun: DDP over the ranks torchrun starts (gloo on CPU, nccl on CUDA).

`torchrun --nproc-per-node N -m train sft ...` (train/__main__.py) starts N copies of the
command; `init()` joins them into one process group from torchrun's environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). Every rank loads the same data and draws the same
row order; an optimizer step's global batch is `accumulate x world_size` rows, and rank r
trains rows r, r + N, r + 2N, ... of it. DDP averages the gradients over the ranks, so each
rank scales its loss by N: the update is exactly the one a single process makes with
`--accumulate accumulate x N` (up to float summation order). Only rank 0 writes files.

With `--full`, FSDP2 (`torch.distributed.fsdp.fully_shard`) takes DDP's place (see Synced).
Without torchrun (no process group) every function here is the single-process identity.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if active() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """True inside a torchrun-started process (its environment names a world)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init(cpu: bool = False) -> None:
    """Join torchrun's process group: nccl when this rank trains on a CUDA GPU, gloo on the
    CPU (`cpu`: the command line said --device cpu)."""
    if active() or not launched():
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        torch.cuda.set_device(local)
    backend = "nccl" if use_cuda else "gloo"
    torch.distributed.init_process_group(backend)
    log.info("rank %d of %d (%s)", rank(), world_size(), backend)


def shutdown() -> None:
    if active():
        torch.distributed.destroy_process_group()


def local_device(device: str) -> str:
    """The device flag for this rank: under torchrun, "auto"/"cuda" mean this rank's GPU."""
    if not active() or device not in ("auto", "cuda", "", None):
        return device
    if torch.distributed.get_backend() == "nccl":
        return f"cuda:{torch.cuda.current_device()}"
    return "cpu" if device in ("auto", "", None) else device


def my_share(batch: list) -> list:
    """This rank's rows of the global batch: every world_size-th, starting at its rank."""
    return batch[rank()::world_size()]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a small statistics tensor (on the CPU for gloo, else moved)."""
    if not active():
        return t
    backend = torch.distributed.get_backend()
    moved = t.cuda() if backend == "nccl" else t
    torch.distributed.all_reduce(moved)
    return moved.cpu() if backend == "nccl" else moved


class _Forward(torch.nn.Module):
    """`fn(model, row)` as a module's forward, so DDP sees the forward it synchronises."""

    def __init__(self, model: torch.nn.Module, fn: Callable):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, row):
        return self.fn(self.model, row)


def full(t: torch.Tensor) -> torch.Tensor:
    """A sharded (FSDP2 DTensor) tensor gathered whole on every rank (a collective: every
    rank must call it); any other tensor as it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def full_optimizer_state(state: dict) -> dict:
    """An optimizer state_dict with every sharded tensor gathered whole (a collective)."""
    return {**state, "state": {k: {n: full(v) for n, v in s.items()}
                               for k, s in state["state"].items()}}


def shard_like(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`whole` (the same full tensor on every rank, e.g. read from a checkpoint) laid out as
    `like`: this rank's shard of a DTensor with like's mesh and placements when `like` is
    sharded (no communication: each rank cuts its own piece), else `whole` itself."""
    if not hasattr(like, "device_mesh"):
        return whole
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(whole.to(like.device), like.device_mesh, like.placements,
                             src_data_rank=None)


def shard_optimizer_state(state: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A gathered optimizer state_dict (full_optimizer_state) cut back into this rank's shards
    of `optimizer`'s parameters, so `optimizer.load_state_dict` sees tensors laid out like
    them; scalars (Adam's step) and unsharded parameters' states pass unchanged."""
    params = {}
    for saved, group in zip(state["param_groups"], optimizer.param_groups, strict=True):
        params.update(zip(saved["params"], group["params"], strict=True))

    def cut(v, p):
        if isinstance(v, torch.Tensor) and v.dim() > 0 and tuple(v.shape) == tuple(p.shape):
            return shard_like(v, p)
        return v

    return {**state, "state": {k: {n: cut(v, params[k]) for n, v in s.items()}
                               for k, s in state["state"].items()}}


def gather_objects(obj) -> list:
    """Every rank's `obj` (picklable), in rank order, on every rank (a collective)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def unshard_for_saving(model: torch.nn.Module) -> None:
    """Replace every sharded parameter of `model` by its whole tensor (a collective), so the
    adapter / merged writers see plain tensors; training is over when this is called."""
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if hasattr(p, "full_tensor"):
                whole = torch.nn.Parameter(p.full_tensor().detach(), requires_grad=False)
                module._parameters[name] = whole


class Synced:
    """Runs `fn(model, row)` through DDP when there is a process group, directly otherwise;
    with `shard` (full fine-tuning) through FSDP2 (`fully_shard`) instead: weights, gradients
    and optimizer states sharded over the ranks between steps. One FSDP group holds the
    whole model (the packed forward calls the layers' parts directly, not the layers'
    forward, so per-layer groups would never be gathered): a forward gathers all of it.
    Make it before reading the model's parameters: FSDP2 replaces them by sharded ones.
    `sync(last)` lets gradients reduce only at the last micro-step of an optimizer step."""

    def __init__(self, model: torch.nn.Module, fn: Callable, shard: bool = False):
        self.fn, self.model = fn, model
        self.ddp = None
        self.sharded = None
        if active() and world_size() > 1 and shard:
            from torch.distributed.fsdp import fully_shard

            self.sharded = fully_shard(_Forward(model, fn))
            log.info("FSDP2: the model sharded over %d ranks", world_size())
        elif active() and world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            device_ids = None
            if torch.distributed.get_backend() == "nccl":
                device_ids = [torch.cuda.current_device()]
            # MoE experts a rank's rows never route to get no gradient on that rank
            self.ddp = DDP(_Forward(model, fn), device_ids=device_ids,
                           find_unused_parameters=True)

    def __call__(self, row):
        if self.sharded is not None:
            return self.sharded(row)
        return self.fn(self.model, row) if self.ddp is None else self.ddp(row)

    def sync(self, last: bool):
        if self.sharded is not None:
            self.sharded.set_requires_gradient_sync(last)
            return contextlib.nullcontext()
        if self.ddp is None or last:
            return contextlib.nullcontext()
        return self.ddp.no_sync()
