"""DPO (Rafailov et al. 2023): prefer the chosen reply over the rejected one, relative to the base.

    loss = -log sigmoid(beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))])

log pi(y) is the summed log-probability of the reply's tokens (and its end token) given the
prompt. The reference is the frozen base: with LoRA the same model with its adapters
disabled (no second copy in memory); with --full the weights before the first step. Either
way the reference log-probs are computed once, before training, in eval mode (no dropout).

A pair trains as one packed row of two samples (chosen, rejected: no padding); a step is
`accumulate` pairs, its loss their mean. Outputs as `train sft` (train/sft.py): DIR/adapter/,
DIR/merged/, DIR/train_log.jsonl (with the reward margin and accuracy), DIR/train_args.json,
DIR/checkpoint.pt (resumable through train/loop.py's checkpoints).

Shapes: P pairs, T tokens of a row.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from train import lora as L
from train.data import IGNORE, DataError, ImageCache, base_speaks
from train.dpo_data import load_pairs, tokenize_pair
from train.loop import (
    CHECKPOINT,
    LOG_FILE,
    Interrupted,
    LoopConfig,
    MasterWeights,
    load_checkpoint,
    lr_at,
    peak_memory_mb,
    row_of,
    save_checkpoint,
    truncate_log,
)
from train.merged import MERGED_DIR, save_merged
from train.pack import PackedRow, PackedRows
from train.sft import (
    ARGS_FILE,
    DTYPES,
    SftOptions,
    TrainError,
    check_resume,
    load_base_weights,
    preflight_memory,
    resolve_base,
    resolve_device_dtype,
)

log = logging.getLogger(__name__)


@dataclass
class DpoOptions(SftOptions):
    beta: float = 0.1


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss and reward margin beta*[(pc - rc) - (pr - rr)], all (P,) fp32."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin), margin


def sequence_logps(model, row: PackedRow) -> torch.Tensor:
    """(samples,) fp32: each sample's summed log-probability of its target tokens."""
    from vlm.train_forward import packed_hidden

    h, _ = packed_hidden(model, row.input_ids, row.positions, row.cu_seqlens, row.max_seqlen,
                         row.pixels, row.grids)
    at = (row.labels != IGNORE).nonzero()[:, 0]
    logits = model.lm_head(h[at]).float()
    token_logps = -F.cross_entropy(logits, row.labels[at], reduction="none")
    sample = torch.searchsorted(row.cu_seqlens[1:].long(), at, right=True)
    n = row.cu_seqlens.shape[0] - 1
    return torch.zeros(n, dtype=torch.float32, device=h.device).index_add(0, sample,
                                                                           token_logps)


def set_adapters(model, enabled: bool) -> None:
    """Turn every peft LoRA layer of `model` on or off (off: the base model exactly)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.enable_adapters(enabled)


@torch.no_grad()
def reference_logps(model, rows, device) -> torch.Tensor:
    """(P, 2) log ref(chosen), log ref(rejected) of every pair row: adapters disabled, eval."""
    was_training = model.training
    model.eval()
    set_adapters(model, False)
    try:
        out = torch.stack([sequence_logps(model, r.to(device)).cpu() for r in rows])
    finally:
        set_adapters(model, True)
        model.train(was_training)
    return out


def pair_rows(pairs, speaks, pack_tokens: int, image_token_id: int, merge_size: int,
              images: ImageCache) -> PackedRows:
    """One row per pair, (chosen, rejected), built when trained (train/pack.py)."""
    samples = []
    for pair in pairs:
        chosen, rejected = tokenize_pair(pair, speaks.processor, images)
        if len(chosen) + len(rejected) > pack_tokens:
            raise DataError(f"{pair.source}: {len(chosen) + len(rejected)} tokens for the pair, "
                            f"more than --pack-tokens {pack_tokens}; raise --pack-tokens")
        samples += [chosen, rejected]
    assignment = [[2 * i, 2 * i + 1] for i in range(len(pairs))]
    return PackedRows(samples, assignment, image_token_id, merge_size)


def train_dpo(model, rows, ref: torch.Tensor, cfg: LoopConfig, beta: float,
              out: Path, *, device: torch.device, resume: bool = False,
              on_step=None) -> list[dict]:
    """cfg.steps DPO steps; log records of the steps run now. Interrupted on Ctrl+C."""
    from train import distributed as D

    # first: DDP broadcasts rank 0's weights, FSDP2 (cfg.shard) replaces them by shards
    stepper = D.Synced(model, sequence_logps, shard=cfg.shard)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    masters = MasterWeights(params)
    optimizer = torch.optim.AdamW(masters.masters, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=(device.type == "cuda") or None)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.dtype == "fp16")
    main = D.is_main()
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
    records, step = [], start
    model.train()

    def save():  # every rank: under FSDP2 saving gathers the shards (rank 0 writes)
        return save_checkpoint(out / CHECKPOINT, step, names, masters, optimizer, scaler, cfg)

    try:
        while step < cfg.steps:
            t0 = time.perf_counter()
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            world = D.world_size()
            batch = [row_of(step * cfg.accumulate * world + j, len(rows), cfg.seed)
                     for j in range(cfg.accumulate * world)]
            mine = D.my_share(batch)
            stats = torch.zeros(4, dtype=torch.float64)  # loss, margin, correct, tokens
            for k, index in enumerate(mine):
                row = rows[index].to(device)
                with stepper.sync(last=k == len(mine) - 1):
                    policy = stepper(row)  # (2,) log pi(chosen), log pi(rejected)
                    rc, rr = ref[index].to(device)
                    loss, margin = dpo_loss(policy[:1], policy[1:], rc[None], rr[None], beta)
                    # the step's loss is the mean over the global batch; DDP averages ranks
                    scaler.scale(loss.sum() * world / len(batch)).backward()
                m = float(margin.detach())
                stats += torch.tensor([float(loss.detach()), m, float(m > 0), row.num_tokens],
                                      dtype=torch.float64)
            stats = D.all_reduce_sum(stats)
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
            step += 1
            seconds = time.perf_counter() - t0
            n = len(batch)
            record = {"step": step, "loss": float(stats[0]) / n, "lr": lr,
                      "tokens_per_s": float(stats[3]) / seconds if seconds > 0 else 0.0,
                      "peak_memory_mb": peak_memory_mb(device), "grad_norm": grad_norm,
                      "margin": float(stats[1]) / n, "accuracy": float(stats[2]) / n,
                      "pairs": n, "total_steps": cfg.steps}
            records.append(record)
            if main:
                with open(out / LOG_FILE, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            if on_step is not None and main:
                on_step(record)
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                save()
    except KeyboardInterrupt:
        raise Interrupted(step, save()) from None
    save()
    model.eval()
    return records


def run_dpo(opts: DpoOptions, on_step=None, settings=None, pairs=None) -> dict:
    """DPO as `opts` says; returns a summary (paths, counts, the last loss and margin).
    `pairs`: Pairs made in memory (train.dpo_data.make_pair / pair_from_scores: sampled and
    scored replies, images as PIL images or paths), trained on after those of opts.inputs
    (which may then be empty)."""
    from train import distributed as D

    out = Path(opts.out).expanduser()
    if opts.full == (opts.lora_rank is not None):
        raise TrainError("choose one: --lora-rank R (adapters) or --full (every weight)")
    if opts.beta <= 0:
        raise TrainError(f"--beta must be > 0, got {opts.beta}")
    if opts.steps is not None and opts.steps < 1:
        raise TrainError(f"--steps must be >= 1, got {opts.steps}")
    if opts.epochs <= 0 or opts.accumulate < 1:
        raise TrainError("--epochs must be > 0 and --accumulate >= 1")
    device, dtype_name = resolve_device_dtype(D.local_device(opts.device), opts.dtype)
    lr = opts.lr if opts.lr is not None else (1e-6 if opts.full else 5e-5)
    if lr <= 0:
        raise TrainError(f"--lr must be > 0, got {lr}")

    folder, cfg = resolve_base(opts.base)
    if settings is None:
        from agent.settings import Settings

        settings = Settings.load()
    speaks = base_speaks(folder, cfg, settings)
    images = ImageCache()
    try:
        given = list(pairs or [])
        pairs = (load_pairs(opts.inputs, speaks, Path(settings.runs_dir).expanduser(), images)
                 if opts.inputs or not given else []) + given
        rows = pair_rows(pairs, speaks, opts.pack_tokens, cfg.image_token_id,
                         cfg.vision.spatial_merge_size, images)
    except DataError as exc:
        raise TrainError(str(exc)) from exc
    # before the weights load: a base that cannot fit stops here, with what to change
    preflight_memory(opts, folder, device, dtype_name, rows)
    model = load_base_weights(opts.base, folder, cfg, device, DTYPES[dtype_name])
    world = D.world_size()
    steps = opts.steps or max(1, math.ceil(len(rows) * opts.epochs / (opts.accumulate * world)))
    warmup = opts.warmup if opts.warmup is not None else round(0.05 * steps)

    lora_cfg = None
    torch.manual_seed(opts.seed)
    if opts.full:
        L.setup_full(model, opts.train_vision)
    else:
        lora_cfg = L.lora_config(opts.lora_rank, opts.lora_alpha, opts.lora_dropout,
                                 opts.train_vision, str(opts.base))
        L.setup_lora(model, lora_cfg)
    from vlm.train_forward import set_gradient_checkpointing

    set_gradient_checkpointing(model, opts.grad_checkpointing)
    ref = reference_logps(model, rows, device)

    resolved = dict(device=str(device), dtype=dtype_name, lr=lr, steps=steps, warmup=warmup,
                    dialect=speaks.dialect.name, base_folder=str(folder), pairs=len(pairs),
                    world_size=world,
                    trainable_parameters=sum(p.numel() for p in model.parameters()
                                             if p.requires_grad))
    args = {**asdict(opts), "method": "dpo", "resolved": resolved}
    check_resume(out, args, opts.resume)
    if opts.resume:
        old = json.loads((out / ARGS_FILE).read_text(encoding="utf-8"))
        if old.get("beta") != opts.beta:
            raise TrainError(f"--resume: beta differs from {out / ARGS_FILE} "
                             f"({old.get('beta')} there); resume with the same options")
    if D.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / ARGS_FILE).write_text(json.dumps(args, indent=2, default=str), encoding="utf-8")
    log.info("DPO on %s: %d pairs, %d steps (%s, %s, beta %g)", opts.base, len(pairs), steps,
             device, dtype_name, opts.beta)
    loop_cfg = LoopConfig(steps=steps, lr=lr, warmup=warmup, accumulate=opts.accumulate,
                          max_grad_norm=opts.max_grad_norm, weight_decay=opts.weight_decay,
                          seed=opts.seed, save_every=opts.save_every, dtype=dtype_name,
                          shard=opts.full)
    records = train_dpo(model, rows, ref, loop_cfg, opts.beta, out, device=device,
                        resume=opts.resume, on_step=on_step)
    summary = {"out": str(out), "steps": steps, "log": str(out / LOG_FILE), **resolved,
               "last_loss": records[-1]["loss"] if records else None,
               "last_margin": records[-1]["margin"] if records else None}
    D.unshard_for_saving(model)  # FSDP2: every rank gathers; rank 0 writes
    if not D.is_main():
        return summary
    if lora_cfg is not None:
        summary["adapter"] = str(L.save_adapter(model, lora_cfg, out / L.ADAPTER_DIR,
                                                opts.train_vision))
    if opts.full or opts.merge:
        if lora_cfg is not None:
            L.merge_lora(model)
        summary["merged"] = str(save_merged(model, folder, out / MERGED_DIR))
    return summary
