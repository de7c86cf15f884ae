"""Peak memory of one training step, and how much of it the step itself added.

activation memory = the peak while the step runs minus what was allocated just before it
(weights, optimizer states, the row's inputs): what gradient checkpointing exists to cut.

On CUDA: the caching allocator's own counters (torch.cuda.max_memory_allocated after a
reset of the peak). On the CPU PyTorch keeps no such counter, so `LiveTensorBytes` keeps
one: a TorchDispatchMode sees every op, forward and backward (the autograd engine runs the
backward of CPU tensors on this thread, with the mode active) and the recomputation of
checkpointed blocks, and counts the bytes of each new storage an op returns until that
storage is freed (a weakref callback). That is the bytes of live tensors, as
max_memory_allocated counts them, without allocator caching or fragmentation; storages
made before the step (weights, optimizer state) are not counted, so the counter starts at
zero and its peak is the step's own.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MIB = 2**20


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of CPU storages created inside the `with` block and still alive; `peak` is the
    largest that number got."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: dict[int, weakref.ref] = {}  # storage data_ptr -> weakref to it

    def _freed(self, key: int, nbytes: int) -> None:
        if self._seen.pop(key, None) is not None:
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if not nbytes or key in self._seen:  # a view, or an in-place result
                continue
            # a storage allocated before the block, returned as is (an alias), was never
            # allocated here; one made by this op is the only case that adds bytes
            if any(isinstance(a, torch.Tensor) and a.device.type == "cpu" and
                   a.untyped_storage().data_ptr() == key for a in tree_flatten(args)[0]):
                continue
            self._seen[key] = weakref.ref(
                storage, lambda _, key=key, n=nbytes: self._freed(key, n))
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        return out


def held_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the distinct storages the model (parameters, gradients, buffers) and the
    optimizer (its state and the parameters it updates, e.g. fp32 masters) hold."""
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    for group in optimizer.param_groups:
        tensors += list(group["params"])
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors
                if t.device.type != "meta"}
    return sum(storages.values())


def step_memory(run_step: Callable[[], object], device: torch.device, held: int) -> dict:
    """Run one training step; its memory in MiB: before it (on the CPU `held`, the bytes
    the model and optimizer hold), its peak, and the activation memory (peak - before)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run_step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return _report(before, peak, "torch.cuda.max_memory_allocated during the step; "
                       "before = torch.cuda.memory_allocated just before it")
    with LiveTensorBytes() as counter:
        run_step()
    return _report(held, held + counter.peak,
                   "CPU: the peak bytes of live tensors made during the step (a "
                   "TorchDispatchMode counting each new storage until it is freed: forward, "
                   "backward, recomputation of checkpointed blocks, optimizer step); before = "
                   "the storages of the weights, gradients, buffers and optimizer state")


def _report(before: int, peak: int, method: str) -> dict:
    return {"before_mib": round(before / MIB, 2), "peak_mib": round(peak / MIB, 2),
            "activation_mib": round((peak - before) / MIB, 2), "method": method}
