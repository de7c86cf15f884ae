"""Before the weights load: will this run fit the device it is about to train on?

The estimate is `train.plan.plan_memory`, the function `deskpilot train plan` prints, fed
with what this run really trains: the base's parameter count (safetensors headers, no
weights read), the resolved dtype, LoRA or full, gradient checkpointing, and the longest
packed row (tokens, and target tokens for the logits: the loss computes logits only at
targets). It is compared with what the device has now: on CUDA the free memory (capped at
the usable share of the total that `train plan` assumes), on the CPU the kernel's
MemAvailable shared by the ranks torchrun started on this host. A run that does not fit
stops with the plan's advice instead of failing an hour into loading, or swapping the
machine to a halt.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from train import distributed as D
from train.errors import TrainError
from train.plan import (
    GIB,
    USABLE_FRACTION,
    MemoryPlan,
    PlanError,
    advice,
    count_parameters,
    plan_memory,
    system_memory_bytes,
)

log = logging.getLogger(__name__)

MEMINFO = Path("/proc/meminfo")


def available_memory(device: torch.device) -> tuple[int | None, str]:
    """(bytes this rank may plan to use on `device`, where the figure came from); None when
    the device's memory cannot be read (the check is then skipped)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        usable = min(free, int(total * USABLE_FRACTION))
        name = torch.cuda.get_device_name(device)
        return usable, f"{device} ({name}): {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB"
    if device.type == "cpu":
        avail, source = cpu_available_bytes()
        if avail is None:
            return None, source
        # torchrun's ranks on this host share its RAM
        ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if D.active() else 1
        if ranks > 1:
            return avail // ranks, f"{source}, shared by {ranks} ranks on this host"
        return avail, source
    return None, f"memory of {device} cannot be read"


def cpu_available_bytes(meminfo: Path = MEMINFO) -> tuple[int | None, str]:
    """RAM a new allocation can get without swapping: MemAvailable (Linux), else the
    physical memory (macOS and others: an upper bound, better than no check)."""
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                kib = int(line.split()[1])
                return kib * 1024, f"cpu: {kib * 1024 / GIB:.1f} GiB available RAM"
    except (OSError, ValueError, IndexError):
        pass
    total = system_memory_bytes()
    if total is None:
        return None, "cpu: the RAM size cannot be read"
    return total, f"cpu: {total / GIB:.1f} GiB RAM"


def longest_row(rows) -> tuple[int, int]:
    """(most tokens, most target tokens) of one packed row, from the packing's assignment
    (train/pack.py PackedRows) without building the rows' tensors."""
    tokens = targets = 0
    for members in rows.assignment:
        tokens = max(tokens, sum(len(rows.samples[j]) for j in members))
        targets = max(targets, sum(rows.samples[j].target_tokens for j in members))
    return tokens, targets


def training_plan(folder: Path, *, dtype: str, full: bool, lora_rank: int | None,
                  train_vision: bool, rows, grad_checkpointing: bool, shard: bool,
                  available: int | None) -> MemoryPlan:
    """The memory plan of this run on one rank. Under FSDP2 (`shard`) only the optimizer
    states and fp32 masters are divided over the ranks: train/distributed.py's single FSDP
    group gathers the whole model for a step, so weights and gradients are whole then."""
    count, config = count_parameters(folder)
    tokens, targets = longest_row(rows)
    plan = plan_memory(count, config, mode="full" if full else "lora", dtype=dtype,
                       lora_rank=lora_rank or 16, train_vision=train_vision, tokens=tokens,
                       logit_tokens=targets, grad_checkpointing=grad_checkpointing,
                       available_bytes=available)
    world = D.world_size()
    if shard and world > 1:
        plan = replace(plan, optimizer=plan.optimizer // world)
    return plan


def check_memory(base: str, folder: Path, device: torch.device, *, dtype: str, full: bool,
                 lora_rank: int | None, train_vision: bool, rows, grad_checkpointing: bool,
                 shard: bool, available: tuple[int | None, str] | None = None,
                 ) -> MemoryPlan | None:
    """Raise TrainError when the run's plan exceeds the device's memory: the base, the GiB
    needed and available, and what to change. `available` overrides the probe (tests, or a
    caller that knows better); returns the plan checked (None when the checkpoint
    cannot be planned)."""
    avail, source = available if available is not None else available_memory(device)
    try:
        plan = training_plan(folder, dtype=dtype, full=full, lora_rank=lora_rank,
                             train_vision=train_vision, rows=rows,
                             grad_checkpointing=grad_checkpointing, shard=shard,
                             available=avail)
    except PlanError as exc:  # the loader will name what is wrong with the checkpoint
        log.warning("memory check skipped: %s", exc)
        return None
    if avail is None:
        log.warning("memory check skipped: %s", source)
        return plan
    log.info("memory plan: %.2f GiB needed, %.2f GiB available (%s)", plan.total / GIB,
             avail / GIB, source)
    if plan.fits:
        return plan
    parts = ", ".join(f"{name} {size(value)}" for name, value in (
        ("weights", plan.weights), ("gradients", plan.gradients),
        ("optimizer", plan.optimizer), ("activations", plan.activations),
        ("logits", plan.logits)) if value)
    tips = "".join(f"\n  - {tip}" for tip in advice(plan))
    how = "--full" if full else f"--lora-rank {lora_rank}"
    raise TrainError(
        f"--base {base} does not fit: {how} in {dtype} on {device} needs ~{size(plan.total)} "
        f"({parts}) but {size(avail)} is available ({source}). To fit:{tips}\n"
        f"(see `deskpilot train plan --base {base}`; --no-memory-check trains anyway)")


def size(n: int) -> str:
    """Bytes in GiB, or MiB below one GiB (a tiny model's figures would all read 0.00 GiB)."""
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2**20:.2f} MiB"
