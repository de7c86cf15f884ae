"""The training loop: packed rows -> optimizer steps, with checkpoints that resume exactly.

One optimizer step = `accumulate` packed rows. Its loss is the summed cross entropy of all
their target tokens divided by that count, so packing never changes what is learned (a row's
loss is the sum of its samples'). Mixed precision: the model computes in bf16 (or fp16, or
fp32); the optimizer updates fp32 master copies of the trainable weights and writes them
back (LoRA adapters are fp32 already); fp16 scales the loss with a GradScaler. AdamW (fused
on CUDA), linear warmup then cosine decay to `min_lr_ratio`, gradient-norm clipping.

Data order: epoch e visits the rows in a permutation drawn from `seed + e`; the row of
micro-step c is a pure function of c, so resuming needs only the step count. A checkpoint
(DIR/checkpoint.pt, written to a temporary name and renamed: a kill leaves the old one or
the new one, never half of one) holds the trainable weights, the optimizer and scaler
state and the RNG states, so `resume` continues bit-for-bit. Ctrl+C saves one and stops.
Under torchrun the checkpoint is the full state (FSDP2 shards gathered, every rank's RNG),
written by rank 0 and cut back into shards by every rank on resume.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from train import distributed as D
from train.pack import PackedRow
from vlm.train_forward import load_balancing_loss, packed_loss

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG_FILE = "train_log.jsonl"


@dataclass
class LoopConfig:
    steps: int  # optimizer steps
    lr: float
    warmup: int = 0  # steps of linear warmup
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    accumulate: int = 1  # packed rows per optimizer step
    max_grad_norm: float = 1.0  # 0: no clipping
    weight_decay: float = 0.0
    seed: int = 0
    save_every: int = 50  # steps between checkpoints (0: only at the end / on Ctrl+C)
    router_aux_coef: float = 0.0  # weight of the MoE load-balancing loss (0: off)
    dtype: str = "fp32"  # compute dtype: bf16 | fp16 | fp32
    shard: bool = False  # under torchrun: FSDP2 instead of DDP (full fine-tuning)


class Interrupted(RuntimeError):
    """Ctrl+C during training: a checkpoint was saved at `step`."""

    def __init__(self, step: int, path: Path):
        super().__init__(f"interrupted after step {step}; checkpoint saved to {path}")
        self.step, self.path = step, path


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): warmup, then cosine."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def row_of(micro_step: int, num_rows: int, seed: int) -> int:
    """Which row micro-step `micro_step` trains on (epoch-wise permutations of the rows)."""
    epoch, k = divmod(micro_step, num_rows)
    g = torch.Generator().manual_seed(seed + epoch)
    return int(torch.randperm(num_rows, generator=g)[k])


class MasterWeights:
    """fp32 copies of trainable weights kept in a lower precision; the optimizer sees these."""

    def __init__(self, params: list[torch.nn.Parameter]):
        self.pairs = [(p, p if p.dtype == torch.float32 else
                       torch.nn.Parameter(p.detach().float().clone())) for p in params]

    @property
    def masters(self) -> list[torch.nn.Parameter]:
        return [m for _, m in self.pairs]

    def grads_to_masters(self) -> None:
        for p, m in self.pairs:
            if m is not p:
                m.grad = None if p.grad is None else p.grad.float()
                p.grad = None

    def masters_to_model(self) -> None:
        with torch.no_grad():
            for p, m in self.pairs:
                if m is not p:
                    p.copy_(m)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def train(model: torch.nn.Module, rows: list[PackedRow], cfg: LoopConfig, out: Path, *,
          device: torch.device, resume: bool = False,
          on_step: Callable[[dict], None] | None = None, top_k: int = 0) -> list[dict]:
    """Run cfg.steps optimizer steps (from the checkpoint with `resume`); returns the log
    records of the steps run now. Raises Interrupted on Ctrl+C after saving."""
    if not rows:
        raise ValueError("no packed rows to train on")
    # under torchrun: DDP (FSDP2 with cfg.shard) over the ranks (train/distributed.py); made
    # first: DDP broadcasts rank 0's weights, FSDP2 replaces the parameters by shards
    stepper = D.Synced(model, row_loss, shard=cfg.shard)
    main = D.is_main()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    masters = MasterWeights(params)
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(masters.masters, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=cfg.weight_decay, fused=fused or None)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.dtype == "fp16")
    start = 0
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        start = load_checkpoint(out / CHECKPOINT, names, masters, optimizer, scaler)
        if main:
            truncate_log(out / LOG_FILE, start)
    else:
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if main:
            (out / LOG_FILE).unlink(missing_ok=True)

    records = []
    step = start
    model.train()
    try:
        while step < cfg.steps:
            record = one_step(stepper, rows, step, cfg, masters, optimizer, scaler, device,
                              top_k)
            step += 1
            record["total_steps"] = cfg.steps
            records.append(record)
            if main:
                with open(out / LOG_FILE, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            if on_step is not None and main:
                on_step(record)
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                save_checkpoint(out / CHECKPOINT, step, names, masters, optimizer, scaler, cfg)
    except KeyboardInterrupt:
        path = save_checkpoint(out / CHECKPOINT, step, names, masters, optimizer, scaler, cfg)
        raise Interrupted(step, path) from None
    save_checkpoint(out / CHECKPOINT, step, names, masters, optimizer, scaler, cfg)
    model.eval()
    return records


def row_loss(model, row: PackedRow):
    """A packed row's summed loss (the forward DDP synchronises under torchrun)."""
    return packed_loss(model, row.input_ids, row.positions, row.cu_seqlens, row.max_seqlen,
                       row.labels, row.pixels, row.grids)


def one_step(stepper, rows, step, cfg: LoopConfig, masters: MasterWeights, optimizer, scaler,
             device, top_k: int) -> dict:
    """One optimizer step over a global batch of `accumulate x world_size` rows, this
    rank's share of them computed here (train/distributed.py)."""
    t0 = time.perf_counter()
    lr = lr_at(step, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    world = D.world_size()
    batch = [rows[row_of(step * cfg.accumulate * world + j, len(rows), cfg.seed)]
             for j in range(cfg.accumulate * world)]
    targets = sum(r.target_tokens for r in batch)
    mine = D.my_share(batch)
    total, tokens = 0.0, 0
    for k, row in enumerate(mine):
        r = row.to(device)
        with stepper.sync(last=k == len(mine) - 1):
            out = stepper(r)
            # x world: DDP averages the ranks' gradients, the step's loss is their sum
            loss = out.loss_sum * world / max(targets, 1)
            if cfg.router_aux_coef and out.router_logits:
                loss = loss + cfg.router_aux_coef * world * load_balancing_loss(
                    out.router_logits, top_k) / len(batch)
            scaler.scale(loss).backward()
        total += float(out.loss_sum.detach())
        tokens += row.num_tokens
    if world > 1:
        total, tokens = D.all_reduce_sum(torch.tensor([total, tokens],
                                                      dtype=torch.float64)).tolist()
    masters.grads_to_masters()
    scaler.unscale_(optimizer)
    grad_norm = 0.0
    if cfg.max_grad_norm:
        grad_norm = float(D.full(torch.nn.utils.clip_grad_norm_(masters.masters,
                                                                cfg.max_grad_norm)))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    masters.masters_to_model()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return {"step": step + 1, "loss": total / max(targets, 1), "lr": lr,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
            "peak_memory_mb": peak_memory_mb(device), "grad_norm": grad_norm,
            "tokens": tokens, "target_tokens": targets}


# --- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(path: Path, step: int, names: list[str], masters: MasterWeights,
                    optimizer, scaler, cfg: LoopConfig) -> Path:
    """Every rank calls it (under FSDP2 the weights and optimizer states are gathered whole
    from the shards, and every rank's RNG state is collected); rank 0 writes one file that
    holds the full state, loadable on any number of ranks that shard it the same way."""
    weights = {n: D.full(m).detach().cpu() for n, m in zip(names, masters.masters)}
    optimizer_state = D.full_optimizer_state(optimizer.state_dict())
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    rng_ranks = D.gather_objects(rng)  # dropout draws differ per rank (different rows)
    if not D.is_main():
        return path
    state = {
        "step": step,
        "weights": weights,
        "optimizer": optimizer_state,
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": rng,
        "rng_ranks": rng_ranks,
        "config": asdict(cfg),
    }
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    log.info("checkpoint at step %d -> %s", step, path)
    return path


def load_checkpoint(path: Path, names: list[str], masters: MasterWeights, optimizer,
                    scaler) -> int:
    """Every rank reads the one file; sharded (FSDP2) weights and optimizer states take this
    rank's shard of the saved full tensors."""
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path} (train without --resume "
                                "to start)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in many ways
        raise ValueError(f"{path}: not a readable training checkpoint ({exc})") from exc
    weights = state["weights"]
    if sorted(weights) != sorted(names):
        raise ValueError(f"{path}: its trainable weights do not match this run's (different "
                         "--lora-rank/--full/--train-vision?); resume with the same options")
    with torch.no_grad():
        for n, m in zip(names, masters.masters):
            m.copy_(D.shard_like(weights[n], m))
    masters.masters_to_model()
    optimizer.load_state_dict(D.shard_optimizer_state(state["optimizer"], optimizer))
    if state["scaler"] is not None and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    ranks = state.get("rng_ranks") or [state["rng"]]
    if len(ranks) != D.world_size():
        log.warning("%s was saved by %d rank(s), resumed on %d: rank 0's RNG state for all "
                    "(dropout masks differ from an uninterrupted run)", path, len(ranks),
                    D.world_size())
        ranks = [ranks[0]] * D.world_size()
    rng = ranks[D.rank()]
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    log.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"])


def truncate_log(path: Path, step: int) -> None:
    """Keep the log records of steps up to `step` (later ones are about to be redone)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
