"""Tiny random Qwen3-VL-MoE checkpoints, built with transformers' own classes.

The model is `transformers.Qwen3VLMoeForConditionalGeneration` with random weights, saved
with `save_pretrained`, then its expert tensors are rewritten into the PUBLISHED layout
(gate_up_proj [E, H, 2I], down_proj [E, I, H]) because that is what users download
(transformers 5.x itself writes [E, 2I, H] / [E, H, I]). Beside it: a tiny byte-level BPE
tokenizer with the Qwen special tokens and a Qwen-style chat template, and a
preprocessor_config.json with the checkpoint's pixel bounds (tokenizer and preprocessor
config come from vlm.synthetic, shared with the benchmarks).

The config exercises every path of our implementation: vision depth 4 with 2 DeepStack
levels, a 3x3 position table that must be interpolated, 2x2 merge, head_dim != hidden/heads,
8 experts top-3, an unequal mrope_section, a dense (mlp_only) decoder layer.

Built once per process (module-level cache) in a temporary folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from vlm.synthetic import build_tokenizer, special_ids, write_preprocessor_config

MIN_PIXELS = 4 * 32 * 32
MAX_PIXELS = 64 * 32 * 32


def tiny_config_dict(vocab_size: int, ids: dict[str, int]) -> dict:
    text = dict(
        vocab_size=vocab_size, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, intermediate_size=64, moe_intermediate_size=32,
        num_experts=8, num_experts_per_tok=3, decoder_sparse_step=1, mlp_only_layers=[2],
        rms_norm_eps=1e-6, max_position_embeddings=4096, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": [3, 3, 2], "mrope_interleaved": True},
        initializer_range=0.1,
    )
    vision = dict(
        depth=4, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
        temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=48,
        num_position_embeddings=9, deepstack_visual_indexes=[1, 2], initializer_range=0.1,
    )
    return dict(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)


def _randomise(model, seed: int) -> None:
    """Weights of a useful scale (norm gains near 1, biases non-zero) so every parameter
    matters and greedy decoding has clear winners."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if ("norm" in name or ".ln_q." in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("pos_embed.weight") or "embed_tokens" in name:
                p.copy_(0.5 * noise)
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 16
                if "experts.gate_up_proj" in name or "experts.down_proj" in name:
                    fan_in = p.shape[-1]  # transformers stores them as (E, out, in)
                p.copy_(noise / fan_in**0.5)


def to_published_layout(folder: Path) -> None:
    """Rewrite every expert tensor from transformers' (E, 2I, H)/(E, H, I) to the published
    (E, H, 2I)/(E, I, H), in place, for single-file or sharded checkpoints."""
    from safetensors.torch import load_file, save_file

    for f in sorted(folder.glob("*.safetensors")):
        tensors = load_file(f)
        changed = False
        for name, t in tensors.items():
            if name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
                tensors[name] = t.transpose(1, 2).contiguous()
                changed = True
        if changed:
            save_file(tensors, f, metadata={"format": "pt"})


def build_checkpoint(folder: Path, seed: int = 0, shard_size: str | None = None):
    """Write a tiny checkpoint into `folder`; returns transformers' model (fp32, eval, eager
    attention and experts) holding the same weights, the oracle for parity tests."""
    import torch
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    ids = special_ids(build_tokenizer(folder))
    config = Qwen3VLMoeConfig(**tiny_config_dict(512, ids))
    config._experts_implementation = "eager"
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = Qwen3VLMoeForConditionalGeneration(config).float().eval()
    _randomise(model, seed)
    kwargs = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(folder, **kwargs)
    to_published_layout(folder)
    write_preprocessor_config(folder, MIN_PIXELS, MAX_PIXELS)
    return model


_CACHE: dict[str, tuple[Path, object]] = {}
_TMP: list[tempfile.TemporaryDirectory] = []


def tiny_checkpoint(name: str = "single", seed: int = 0) -> tuple[Path, object]:
    """(folder, transformers oracle model), built once per process. `name="sharded"` splits
    the weights over several safetensors files with an index json."""
    key = f"{name}-{seed}"
    if key not in _CACHE:
        tmp = tempfile.TemporaryDirectory(prefix=f"vlm-tiny-{key}-")
        _TMP.append(tmp)
        folder = Path(tmp.name)
        model = build_checkpoint(folder, seed, shard_size="100KB" if name == "sharded" else None)
        _CACHE[key] = (folder, model)
    return _CACHE[key]


# -- the other families: Qwen2.5-VL (UI-TARS-1.5) and dense Qwen3-VL ------------------------

QWEN25_MIN_PIXELS = 4 * 28 * 28
QWEN25_MAX_PIXELS = 64 * 28 * 28


def qwen25_config_dict(vocab_size: int, ids: dict[str, int]) -> dict:
    """Tiny Qwen2.5-VL: 112-px windows (4x4 merged tokens) in vision blocks 0 and 2, global
    attention in blocks 1 and 3; an unequal mrope_section; q/k/v biases (transformers sets
    them for this family)."""
    text = dict(
        vocab_size=vocab_size, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=96, rms_norm_eps=1e-6,
        max_position_embeddings=4096, tie_word_embeddings=False, initializer_range=0.1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": [2, 3, 3]},
    )
    vision = dict(
        depth=4, hidden_size=32, intermediate_size=48, num_heads=2, patch_size=14,
        temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64, window_size=112,
        fullatt_block_indexes=[1, 3], in_channels=3, initializer_range=0.1,
    )
    return dict(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)


def qwen3_dense_config_dict(vocab_size: int, ids: dict[str, int]) -> dict:
    """The MoE test config with a dense SwiGLU MLP instead of experts (Qwen3-VL-8B's shape
    family): same vision tower, DeepStack levels and interleaved MRoPE."""
    d = tiny_config_dict(vocab_size, ids)
    for key in ("moe_intermediate_size", "num_experts", "num_experts_per_tok",
                "decoder_sparse_step", "mlp_only_layers"):
        d["text_config"].pop(key)
    return d


def _rename_tensors(folder: Path, rename) -> None:
    from safetensors.torch import load_file, save_file

    for f in sorted(folder.glob("*.safetensors")):
        tensors = load_file(f)
        save_file({rename(n): t for n, t in tensors.items()}, f, metadata={"format": "pt"})


def _published_name(name: str) -> str:
    if name.startswith("model.visual."):
        return name[len("model."):]
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    return name


def _nested_name(name: str) -> str:
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model."):
        return "model.language_model." + name[len("model."):]
    return name


def to_layout(folder: Path, layout: str) -> None:
    """Rewrite a tiny Qwen2.5-VL checkpoint into one of the layouts found in the wild.

    "published": what UI-TARS-1.5 / Qwen2.5-VL files on the hub hold: tensors `visual.*`,
    `model.*` (decoder), `lm_head.*`, and config.json with the text fields at the top level
    and the rotary settings as `rope_scaling` {"type": "mrope"} + `rope_theta`.
    "nested": tensors `model.visual.*`, `model.language_model.*` (transformers 4.52-4.57).
    (transformers 5.x itself saves the published tensor names with a nested config.)
    """
    import json

    if layout == "nested":
        _rename_tensors(folder, _nested_name)
        return
    if layout != "published":
        raise ValueError(f"unknown layout {layout!r}")
    _rename_tensors(folder, _published_name)
    cfg_file = folder / "config.json"
    cfg = json.loads(cfg_file.read_text())
    text = cfg.pop("text_config")
    rope = text.pop("rope_parameters")
    text["rope_theta"] = rope["rope_theta"]
    text["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    for key in ("model_type", "architectures", "dtype"):
        text.pop(key, None)
    cfg.update(text)
    vision = cfg["vision_config"]
    vision["model_type"] = "qwen2_5_vl"
    vision["in_chans"] = vision.pop("in_channels")
    vision.pop("rope_parameters", None)
    cfg_file.write_text(json.dumps(cfg, indent=2))


def build_family_checkpoint(folder: Path, family: str, seed: int = 0):
    """A tiny `family` checkpoint ("qwen2_5_vl" or "qwen3_vl") in `folder`; returns
    transformers' model (fp32, eval, eager attention) holding the same weights."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    folder.mkdir(parents=True, exist_ok=True)
    ids = special_ids(build_tokenizer(folder))
    if family == "qwen2_5_vl":
        config = Qwen2_5_VLConfig(**qwen25_config_dict(512, ids))
        model_cls, pixels = Qwen2_5_VLForConditionalGeneration, (QWEN25_MIN_PIXELS,
                                                                 QWEN25_MAX_PIXELS)
    elif family == "qwen3_vl":
        config = Qwen3VLConfig(**qwen3_dense_config_dict(512, ids))
        model_cls, pixels = Qwen3VLForConditionalGeneration, (MIN_PIXELS, MAX_PIXELS)
    else:
        raise ValueError(f"no tiny checkpoint for family {family!r}")
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(config).float().eval()
    _randomise(model, seed)
    model.save_pretrained(folder)
    write_preprocessor_config(folder, *pixels, family=family)
    return model


def tiny_family_checkpoint(family: str, layout: str = "saved", seed: int = 0):
    """(folder, transformers oracle) for "qwen2_5_vl" or "qwen3_vl", built once per process.
    `layout` "saved" is what transformers 5.x save_pretrained wrote; for Qwen2.5-VL also
    "published" and "nested" (see to_layout), copies of the saved one rewritten."""
    key = f"{family}-{layout}-{seed}"
    if key not in _CACHE:
        import shutil

        tmp = tempfile.TemporaryDirectory(prefix=f"vlm-tiny-{key}-")
        _TMP.append(tmp)
        folder = Path(tmp.name)
        if layout == "saved":
            model = build_family_checkpoint(folder, family, seed)
        else:
            saved, model = tiny_family_checkpoint(family, "saved", seed)
            shutil.copytree(saved, folder, dirs_exist_ok=True)
            to_layout(folder, layout)
        _CACHE[key] = (folder, model)
    return _CACHE[key]


# -- Qwen3.5 (hybrid Gated DeltaNet / gated attention decoder) ---------------------------------

QWEN35_LAYER_TYPES = ["linear_attention", "full_attention", "linear_attention",
                      "linear_attention", "full_attention"]


def qwen35_config_dict(vocab_size: int, ids: dict[str, int], moe: bool = True) -> dict:
    """Tiny Qwen3.5(-MoE): linear and full attention layers mixed (not in the published 3:1
    rhythm), GQA 4:2 with head_dim 16 of which half rotates (partial_rotary_factor 0.5 ->
    8 rotary channels, unequal interleaved mrope_section),
    DeltaNet with 2 q/k heads serving 4 value heads of a different dim (8 vs 12), conv
    width 4; MoE: 8 experts top-3 plus a shared expert of another width. Vision: the Qwen3-VL
    tower without DeepStack and an interpolated 3x3 position table."""
    text = dict(
        vocab_size=vocab_size, hidden_size=48, num_hidden_layers=len(QWEN35_LAYER_TYPES),
        layer_types=list(QWEN35_LAYER_TYPES), num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=12,
        linear_num_key_heads=2, linear_num_value_heads=4, rms_norm_eps=1e-6,
        max_position_embeddings=4096, tie_word_embeddings=False, initializer_range=0.1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.5, "mrope_section": [2, 1, 1],
                         "mrope_interleaved": True},
    )
    if moe:
        text.update(moe_intermediate_size=16, shared_expert_intermediate_size=24,
                    num_experts=8, num_experts_per_tok=3)
    else:
        text.update(intermediate_size=40)
    vision = dict(
        depth=3, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
        temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=48,
        num_position_embeddings=9, initializer_range=0.1,
    )
    return dict(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)


def _randomise_qwen35(model, seed: int) -> None:
    """After `_randomise`: the decoder's zero-centred RMSNorms (gain 1 + weight) get weights
    near 0, i.e. gains near 1 as everywhere else; decays of a useful range: exp(A_log) in
    [0.02, 0.2] and dt_bias near 0 give g = -exp(A_log) * softplus(a + dt_bias) of about
    -0.01..-0.2 per token, so the recurrent state remembers tens of tokens (across a 64-token
    chunk boundary) instead of a few."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            zero_centred = name.startswith("model.language_model.") and name.endswith((
                "layernorm.weight", "q_norm.weight", "k_norm.weight", "language_model.norm.weight"))
            if zero_centred:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("linear_attn.A_log"):
                p.copy_(torch.empty(p.shape).uniform_(0.02, 0.2, generator=g).log())
            elif name.endswith("linear_attn.dt_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def to_fused_expert_layout(folder: Path) -> None:
    """Rewrite the per-expert tensors save_pretrained writes for Qwen3.5-MoE (the published
    layout, `mlp.experts.N.{gate,up,down}_proj.weight`) into transformers' fused in-memory
    layout: `mlp.experts.gate_up_proj` [E, 2I, H] and `mlp.experts.down_proj` [E, H, I]."""
    import re

    import torch
    from safetensors.torch import load_file, save_file

    pat = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
    for f in sorted(folder.glob("*.safetensors")):
        out, experts = {}, {}
        for name, t in load_file(f).items():
            m = pat.match(name)
            if m:
                experts.setdefault(m[1], {})[(int(m[2]), m[3])] = t
            else:
                out[name] = t
        for stem, parts in experts.items():
            n = 1 + max(e for e, _ in parts)
            out[stem + ".gate_up_proj"] = torch.stack(
                [torch.cat([parts[(e, "gate_proj")], parts[(e, "up_proj")]]) for e in range(n)])
            out[stem + ".down_proj"] = torch.stack([parts[(e, "down_proj")] for e in range(n)])
        save_file(out, f, metadata={"format": "pt"})


def build_qwen35_checkpoint(folder: Path, family: str = "qwen3_5_moe", seed: int = 0):
    """A tiny Qwen3.5 checkpoint ("qwen3_5_moe" or dense "qwen3_5") as transformers'
    save_pretrained writes it; returns the oracle (fp32, eval, eager attention/experts)."""
    import torch
    from transformers import (
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3_5MoeConfig,
        Qwen3_5MoeForConditionalGeneration,
    )

    folder.mkdir(parents=True, exist_ok=True)
    ids = special_ids(build_tokenizer(folder))
    if family == "qwen3_5_moe":
        config = Qwen3_5MoeConfig(**qwen35_config_dict(512, ids, moe=True))
        config._experts_implementation = "eager"
        model_cls = Qwen3_5MoeForConditionalGeneration
    elif family == "qwen3_5":
        config = Qwen3_5Config(**qwen35_config_dict(512, ids, moe=False))
        model_cls = Qwen3_5ForConditionalGeneration
    else:
        raise ValueError(f"no tiny Qwen3.5 checkpoint for family {family!r}")
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(config).float().eval()
    _randomise(model, seed)
    _randomise_qwen35(model, seed)
    model.save_pretrained(folder)
    write_preprocessor_config(folder, MIN_PIXELS, MAX_PIXELS)
    return model


def tiny_qwen35_checkpoint(family: str = "qwen3_5_moe", layout: str = "saved", seed: int = 0):
    """(folder, transformers oracle) built once per process. `layout` "saved" is what
    save_pretrained writes (for the MoE model one tensor per expert, as the published files);
    "fused" (MoE only) has the experts stacked the way transformers holds them in memory."""
    key = f"{family}-{layout}-{seed}"
    if key not in _CACHE:
        import shutil

        tmp = tempfile.TemporaryDirectory(prefix=f"vlm-tiny-{key}-")
        _TMP.append(tmp)
        folder = Path(tmp.name)
        if layout == "saved":
            model = build_qwen35_checkpoint(folder, family, seed)
        elif layout == "fused":
            saved, model = tiny_qwen35_checkpoint(family, "saved", seed)
            shutil.copytree(saved, folder, dirs_exist_ok=True)
            to_fused_expert_layout(folder)
        else:
            raise ValueError(f"unknown layout {layout!r}")
        _CACHE[key] = (folder, model)
    return _CACHE[key]
