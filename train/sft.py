"""Supervised fine-tuning, top to bottom: base + runs -> samples -> rows -> LoRA/full -> DIR.

    DIR/train_args.json   every option, resolved (device, dtype, steps), and the data counts
    DIR/train_log.jsonl   one line per optimizer step (train/loop.py)
    DIR/checkpoint.pt     the resumable training state (train/loop.py)
    DIR/adapter/          with LoRA: the peft adapter for the base (train/lora.py)
    DIR/merged/           with --merge, and always with --full: a complete checkpoint in the
                          base's own format (train/merged.py)
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from train import distributed as D
from train import lora as L
from train.data import DataError, base_speaks, load_samples
from train.errors import TrainError
from train.loop import LOG_FILE, LoopConfig, train
from train.merged import MERGED_DIR, save_merged
from train.pack import pack
from train.preflight import check_memory

log = logging.getLogger(__name__)

ARGS_FILE = "train_args.json"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# what must not change between a run and its --resume
RESUME_KEYS = ("inputs", "base", "lora_rank", "full", "train_vision", "pack_tokens", "lr",
               "steps", "epochs", "accumulate", "seed", "dtype", "only_success",
               "lora_alpha", "lora_dropout", "warmup", "weight_decay", "router_aux_coef")


@dataclass
class SftOptions:
    inputs: list[str]
    base: str
    out: str
    lora_rank: int | None = None  # None with full=True
    full: bool = False
    merge: bool = False
    steps: int | None = None
    epochs: float = 3.0
    lr: float | None = None  # None: 2e-4 with LoRA, 1e-5 full
    device: str = "auto"
    pack_tokens: int = 16384
    grad_checkpointing: bool = False
    dtype: str = "auto"
    train_vision: bool = False
    only_success: bool = False
    resume: bool = False
    memory_check: bool = True  # refuse a base whose memory plan exceeds the device's
    lora_alpha: float | None = None  # None: lora.DEFAULT_ALPHA (rsLoRA scaling)
    lora_dropout: float = 0.05
    accumulate: int = 1
    warmup: int | None = None  # None: 5% of the steps
    seed: int = 0
    save_every: int = 50
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    router_aux_coef: float = 0.0
    resolved: dict = field(default_factory=dict)


def resolve_device_dtype(device: str, dtype: str) -> tuple[torch.device, str]:
    """"auto": CUDA when present; bf16 on a GPU that has it, else fp16 there; fp32 on CPU."""
    dev = torch.device("cuda" if device in ("auto", "", None) and torch.cuda.is_available()
                       else ("cpu" if device in ("auto", "", None) else device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: PyTorch sees no CUDA GPU")
    if dtype in ("auto", "", None):
        if dev.type == "cuda":
            dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            dtype = "fp32"
    if dtype not in DTYPES:
        raise TrainError(f"--dtype {dtype!r}: use bf16, fp16 or fp32")
    if dtype == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TrainError("--dtype bf16: this GPU has no bf16; use --dtype fp16 (a grad "
                         "scaler keeps small gradients)")
    return dev, dtype


def resolve_base(base: str):
    """(folder, config) of a checkpoint folder or hub id; no weights read."""
    from vlm.config import ConfigError
    from vlm.weights import WeightsError, read_config, resolve_checkpoint

    try:
        folder = resolve_checkpoint(base)
        return folder, read_config(folder)
    except (ConfigError, WeightsError) as exc:
        raise TrainError(f"--base {base}: {exc}") from exc


def load_base_weights(base: str, folder, cfg, device: torch.device, dtype: torch.dtype):
    """Our model with the checkpoint's weights, on `device` in `dtype`."""
    from vlm.config import ConfigError
    from vlm.model import QwenVL
    from vlm.weights import WeightsError, load_weights

    try:
        with torch.device("meta"):
            model = QwenVL(cfg)
        load_weights(model, cfg, folder, dtype=dtype, device=device)
    except (ConfigError, WeightsError) as exc:
        raise TrainError(f"--base {base}: {exc}") from exc
    except torch.cuda.OutOfMemoryError as exc:
        raise TrainError(f"--base {base} does not fit on {device} in {dtype}: {exc}. Check "
                         "`deskpilot train plan`; use LoRA, --grad-checkpointing or a "
                         "bigger GPU") from exc
    return model


def load_base(base: str, device: torch.device, dtype: torch.dtype):
    """(folder, config, our model) for a checkpoint folder or hub id."""
    folder, cfg = resolve_base(base)
    return folder, cfg, load_base_weights(base, folder, cfg, device, dtype)


def preflight_memory(opts: SftOptions, folder, device: torch.device, dtype_name: str,
                     rows) -> None:
    """The memory check of train/preflight.py for these options (skipped when the options
    say --no-memory-check)."""
    if not opts.memory_check:
        log.info("memory check off (--no-memory-check)")
        return
    check_memory(opts.base, folder, device, dtype=dtype_name, full=opts.full,
                 lora_rank=opts.lora_rank, train_vision=opts.train_vision, rows=rows,
                 grad_checkpointing=opts.grad_checkpointing, shard=opts.full)


def run_sft(opts: SftOptions, on_step=None, settings=None) -> dict:
    """Train as `opts` says; returns a summary (paths, counts, the last loss)."""
    out = Path(opts.out).expanduser()
    if opts.full == (opts.lora_rank is not None):
        raise TrainError("choose one: --lora-rank R (adapters) or --full (every weight)")
    if opts.steps is not None and opts.steps < 1:
        raise TrainError(f"--steps must be >= 1, got {opts.steps}")
    if opts.epochs <= 0:
        raise TrainError(f"--epochs must be > 0, got {opts.epochs}")
    if opts.accumulate < 1:
        raise TrainError(f"--accumulate must be >= 1, got {opts.accumulate}")
    device, dtype_name = resolve_device_dtype(D.local_device(opts.device), opts.dtype)
    lr = opts.lr if opts.lr is not None else (1e-5 if opts.full else 2e-4)
    if lr <= 0:
        raise TrainError(f"--lr must be > 0, got {lr}")

    folder, cfg = resolve_base(opts.base)
    if settings is None:
        from agent.settings import Settings

        settings = Settings.load()
    speaks = base_speaks(folder, cfg, settings)
    try:
        samples = load_samples(opts.inputs, speaks, only_success=opts.only_success,
                               runs_dir=Path(settings.runs_dir).expanduser())
        rows = pack(samples, opts.pack_tokens, cfg.image_token_id,
                    cfg.vision.spatial_merge_size)
    except DataError as exc:
        raise TrainError(str(exc)) from exc
    # before the weights load: a base that cannot fit stops here, with what to change
    preflight_memory(opts, folder, device, dtype_name, rows)
    model = load_base_weights(opts.base, folder, cfg, device, DTYPES[dtype_name])
    # under torchrun a step's global batch is accumulate x world_size rows
    steps = opts.steps or max(1, math.ceil(len(rows) * opts.epochs /
                                           (opts.accumulate * D.world_size())))
    warmup = opts.warmup if opts.warmup is not None else round(0.05 * steps)

    lora_cfg = None
    torch.manual_seed(opts.seed)  # the adapters' initialisation is part of the run
    if opts.full:
        trainable = L.setup_full(model, opts.train_vision)
    else:
        lora_cfg = L.lora_config(opts.lora_rank, opts.lora_alpha, opts.lora_dropout,
                                 opts.train_vision, str(opts.base))
        trainable = L.setup_lora(model, lora_cfg)
    from vlm.train_forward import set_gradient_checkpointing

    set_gradient_checkpointing(model, opts.grad_checkpointing)

    resolved = dict(device=str(device), dtype=dtype_name, lr=lr, steps=steps, warmup=warmup,
                    dialect=speaks.dialect.name, base_folder=str(folder),
                    samples=len(samples), rows=len(rows),
                    tokens=sum(len(s) for s in samples),
                    target_tokens=sum(s.target_tokens for s in samples),
                    trainable_parameters=sum(p.numel() for p in model.parameters()
                                             if p.requires_grad),
                    trainable_tensors=len(trainable), world_size=D.world_size())
    args = {**asdict(opts), "resolved": resolved}
    check_resume(out, args, opts.resume)
    out.mkdir(parents=True, exist_ok=True)
    if D.is_main():  # only rank 0 writes files
        (out / ARGS_FILE).write_text(json.dumps(args, indent=2, default=str), encoding="utf-8")
    log.info("training %s on %d samples in %d rows, %d steps (%s, %s)", opts.base,
             len(samples), len(rows), steps, device, dtype_name)

    loop_cfg = LoopConfig(steps=steps, lr=lr, warmup=warmup, accumulate=opts.accumulate,
                          max_grad_norm=opts.max_grad_norm, weight_decay=opts.weight_decay,
                          seed=opts.seed, save_every=opts.save_every,
                          router_aux_coef=opts.router_aux_coef, dtype=dtype_name,
                          shard=opts.full)
    records = train(model, rows, loop_cfg, out, device=device, resume=opts.resume,
                    on_step=on_step, top_k=cfg.text.num_experts_per_tok)

    summary = {"out": str(out), "steps": steps, "log": str(out / LOG_FILE), **resolved,
               "last_loss": records[-1]["loss"] if records else None}
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


def check_resume(out: Path, args: dict, resume: bool) -> None:
    previous = out / ARGS_FILE
    if not resume:
        return
    if not previous.is_file():
        raise TrainError(f"--resume: {out} has no {ARGS_FILE}; nothing to resume")
    old = json.loads(previous.read_text(encoding="utf-8"))
    changed = [k for k in RESUME_KEYS if old.get(k) != json.loads(json.dumps(args.get(k),
                                                                               default=str))]
    if changed:
        raise TrainError(f"--resume: {', '.join(changed)} differ from {previous}; resume "
                         "with the same options (or train into a new --out)")
