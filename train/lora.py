"""What trains: LoRA adapters through peft, or every weight (full fine-tuning).

LoRA targets, by default, the decoder's attention projections (q/k/v/o_proj) and its dense
MLPs (gate/up/down_proj of the dense layers; the experts' stacked weights stay frozen),
never the vision tower unless `train_vision` (then its attention and MLP projections too).
The adapters are peft's own LoRA layers (no hand-written LoRA), injected into our modules;
since our module names are the checkpoint's names minus their prefix, the saved adapter's
tensor names are exactly what transformers + peft expect for the checkpoint
(`base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight`).

Full fine-tuning trains every parameter except the vision tower (unless `train_vision`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# our module name -> transformers' (the in-memory names peft sees in transformers' model)
HF_PREFIXES = (("visual.", "model.visual."), ("language_model.", "model.language_model."))

TEXT_TARGETS = r"language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
VISION_TARGETS = (r"visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(linear_fc1|linear_fc2|gate_proj"
                  r"|up_proj|down_proj))")
# rsLoRA: adapters scaled by alpha / sqrt(rank) (peft's use_rslora), not alpha / rank, so the
# update's size does not shrink as the rank grows. Measured on the tiny end-to-end run (200 steps
# at lr 1e-3, rank 8): alpha 16 with alpha/rank ended at loss 0.99 and replies that did not
# parse; alpha 16 with rsLoRA ended at 0.54 and replayed the recorded actions.
DEFAULT_ALPHA = 16.0
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def hf_name(ours: str) -> str:
    for src, dst in HF_PREFIXES:
        if ours.startswith(src):
            return dst + ours[len(src):]
    return ours


def target_regex(train_vision: bool, prefix: str = "") -> str:
    """The modules LoRA wraps, as one regex peft matches against full module names."""
    parts = [TEXT_TARGETS] + ([VISION_TARGETS] if train_vision else [])
    return prefix + "(" + "|".join(parts) + ")"


def freeze_all(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def setup_full(model: torch.nn.Module, train_vision: bool) -> list[str]:
    """Every weight trains except the vision tower's (unless train_vision); returns names."""
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(train_vision or not name.startswith("visual."))
        if p.requires_grad:
            names.append(name)
    return names


def lora_config(rank: int, alpha: float | None, dropout: float, train_vision: bool,
                base: str = "", rslora: bool = True):
    """peft's LoraConfig for our module names (the saved copy gets transformers' names);
    alpha None: DEFAULT_ALPHA."""
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"--lora-rank must be >= 1, got {rank}")
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                      use_rslora=rslora, target_modules=target_regex(train_vision),
                      base_model_name_or_path=base or None)


def setup_lora(model: torch.nn.Module, config) -> list[str]:
    """Freeze the model, inject peft's LoRA layers (fp32 adapters); returns trainable names."""
    from peft import inject_adapter_in_model

    freeze_all(model)
    inject_adapter_in_model(config, model)
    names = []
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()  # adapters train in fp32 whatever the base dtype
            p.requires_grad_(True)
            names.append(name)
        else:
            p.requires_grad_(False)
    if not names:
        raise ValueError("LoRA matched no module of this model")
    return names


def save_adapter(model: torch.nn.Module, config, out: Path, train_vision: bool) -> Path:
    """DIR/adapter/: adapter_config.json + adapter_model.safetensors in transformers' names."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(model)
    tensors = {"base_model.model." + hf_name(k): v.detach().to("cpu").contiguous()
               for k, v in state.items()}
    save_file(tensors, out / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    saved = config.to_dict()
    # transformers' module names carry a "model." prefix (and peft's wrapper another)
    saved["target_modules"] = target_regex(train_vision, prefix=r".*")
    saved["peft_type"] = "LORA"
    saved["task_type"] = None
    for key, value in list(saved.items()):
        if isinstance(value, set):
            saved[key] = sorted(value)
    (out / "adapter_config.json").write_text(json.dumps(saved, indent=2, default=str))
    log.info("adapter: %d tensors -> %s", len(tensors), out)
    return out


def merge_lora(model: torch.nn.Module) -> None:
    """Fold every LoRA layer into its base weight and put the plain layer back, in place."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
