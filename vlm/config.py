"""Model configuration read from a checkpoint's config.json.

Three dataclasses (vision tower, text decoder, top level) built from the checkpoint dict:
unknown keys are ignored (checkpoints carry many training-only fields), every field our
code relies on is checked once here so a broken config fails at load time with a message
naming the field, not deep inside a matmul. Field meanings follow transformers'
`Qwen3VLMoeConfig` (the oracle); both the 4.57 (`rope_scaling` + `rope_theta`) and the
5.x (`rope_parameters`) spellings of the rotary settings are accepted.

Three families share these dataclasses; what a family fixes rather than reads (dense vs
MoE MLP, q/k norm, q/k/v bias, MRoPE layout, the vision tower's extras) is filled in by
`family_dicts`. Published Qwen2.5-VL files keep the text fields at the top level of
config.json (transformers >= 4.52 nests them under text_config); both layouts are read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# architectures we implement -> family file that builds them
SUPPORTED_ARCHITECTURES = {
    "Qwen3VLMoeForConditionalGeneration": "qwen3_vl_moe",
    "Qwen3VLForConditionalGeneration": "qwen3_vl",  # dense MLP (Qwen3-VL-8B)
    "Qwen2_5_VLForConditionalGeneration": "qwen2_5_vl",  # UI-TARS-1.5-7B
    # hybrid Gated DeltaNet / gated attention decoder (vlm/qwen3_5.py)
    "Qwen3_5MoeForConditionalGeneration": "qwen3_5_moe",  # Qwen3.5-35B-A3B, Holo3
    "Qwen3_5ForConditionalGeneration": "qwen3_5",  # dense Qwen3.5 (0.8B-27B)
}
HYBRID_FAMILIES = ("qwen3_5_moe", "qwen3_5")


class ConfigError(ValueError):
    """A checkpoint's config.json is not one we can run: the message names the field."""


def _pick(cls, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names and v is not None}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class VisionConfig:
    depth: int = 27  # ViT blocks
    hidden_size: int = 1152  # ViT width
    intermediate_size: int = 4304  # ViT MLP width
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = 16  # pixels per patch side
    temporal_patch_size: int = 2  # a still image is two identical frames
    spatial_merge_size: int = 2  # 2x2 patches -> one LLM token
    out_hidden_size: int = 2048  # merger output = text hidden size
    num_position_embeddings: int = 2304  # learned table, a square grid (48x48); 0: none
    deepstack_visual_indexes: list[int] = field(default_factory=lambda: [8, 16, 24])
    hidden_act: str = "gelu_pytorch_tanh"
    rope_theta: float = 10000.0  # 2D rotary base
    window_size: int = 0  # Qwen2.5-VL: attention window side in pixels (0: global only)
    fullatt_block_indexes: list[int] = field(default_factory=list)  # global blocks if windowed

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VisionConfig:
        kw = _pick(cls, d)
        rope = d.get("rope_parameters") or {}
        if "rope_theta" in rope:
            kw["rope_theta"] = rope["rope_theta"]
        kw["deepstack_visual_indexes"] = list(kw.get("deepstack_visual_indexes", [8, 16, 24]))
        kw["fullatt_block_indexes"] = list(kw.get("fullatt_block_indexes", []))
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid_side(self) -> int:
        return math.isqrt(self.num_position_embeddings)

    def validate(self) -> None:
        for name in ("depth", "hidden_size", "intermediate_size", "num_heads", "patch_size",
                     "temporal_patch_size", "spatial_merge_size", "out_hidden_size"):
            _check(getattr(self, name) > 0, f"vision_config.{name} must be > 0, got "
                   f"{getattr(self, name)}")
        for name in ("num_position_embeddings", "window_size"):
            _check(getattr(self, name) >= 0, f"vision_config.{name} must be >= 0, got "
                   f"{getattr(self, name)}")
        _check(self.hidden_size % self.num_heads == 0,
               f"vision_config.hidden_size ({self.hidden_size}) must be divisible by "
               f"num_heads ({self.num_heads})")
        _check(self.head_dim % 4 == 0,
               f"vision head dim {self.head_dim} must be a multiple of 4 (2D rotary: half rows, "
               "half columns, each rotated in pairs)")
        _check(self.grid_side**2 == self.num_position_embeddings,
               f"vision_config.num_position_embeddings ({self.num_position_embeddings}) must be a "
               "perfect square (the learned table is a square grid)")
        for i in self.deepstack_visual_indexes:
            _check(0 <= i < self.depth,
                   f"vision_config.deepstack_visual_indexes has {i}, outside 0..{self.depth - 1}")
        unit = self.patch_size * self.spatial_merge_size
        _check(self.window_size % unit == 0,
               f"vision_config.window_size ({self.window_size}) must be a multiple of "
               f"patch_size * spatial_merge_size ({unit}): windows hold whole merged tokens")
        for i in self.fullatt_block_indexes:
            _check(0 <= i < self.depth,
                   f"vision_config.fullatt_block_indexes has {i}, outside 0..{self.depth - 1}")


@dataclass
class TextConfig:
    vocab_size: int = 151936
    hidden_size: int = 2048
    num_hidden_layers: int = 48
    num_attention_heads: int = 32
    num_key_value_heads: int = 4  # GQA
    head_dim: int = 0  # 0 -> hidden_size // num_attention_heads (derived)
    intermediate_size: int = 6144  # dense MLP width (layers listed in mlp_only_layers)
    moe_intermediate_size: int = 768  # per-expert MLP width
    num_experts: int = 128
    num_experts_per_tok: int = 8  # top-k
    decoder_sparse_step: int = 1  # every n-th layer is MoE
    mlp_only_layers: list[int] = field(default_factory=list)
    rms_norm_eps: float = 1e-6
    rope_theta: float = 5_000_000.0
    mrope_section: list[int] = field(default_factory=lambda: [24, 20, 20])  # T, H, W frequencies
    mrope_interleaved: bool = True  # Qwen3-VL interleaves T/H/W channels
    attention_bias: bool = False  # bias on q/k/v and o projections (Qwen3)
    qkv_bias: bool = False  # bias on q/k/v only (Qwen2 decoder): set by family_dicts
    qk_norm: bool = True  # per-head RMSNorm on q and k before rotary (Qwen3): family_dicts
    hidden_act: str = "silu"
    # Qwen3.5 hybrid decoder (vlm/qwen3_5.py); the defaults keep the other families unchanged
    layer_types: list[str] = field(default_factory=list)  # per layer; empty: all full attention
    partial_rotary_factor: float = 1.0  # rotary on the first factor*head_dim channels only
    shared_expert_intermediate_size: int = 0  # 0: no shared expert beside the routed ones
    linear_conv_kernel_dim: int = 4  # DeltaNet short causal convolution width
    linear_key_head_dim: int = 128
    linear_value_head_dim: int = 128
    linear_num_key_heads: int = 16  # q/k heads; each serves num_value/num_key value heads
    linear_num_value_heads: int = 32

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextConfig:
        kw = _pick(cls, d)
        if "num_local_experts" in d and "num_experts" not in d:
            kw["num_experts"] = d["num_local_experts"]
        # rotary settings: 5.x `rope_parameters`, 4.57 `rope_scaling` + top-level rope_theta
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        if "rope_theta" in rope:
            kw["rope_theta"] = rope["rope_theta"]
        if "mrope_section" in rope:
            kw["mrope_section"] = list(rope["mrope_section"])
        if "mrope_interleaved" in rope:
            kw["mrope_interleaved"] = bool(rope["mrope_interleaved"])
        if "partial_rotary_factor" in rope:
            kw["partial_rotary_factor"] = float(rope["partial_rotary_factor"])
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        # Qwen2.5-VL files spell the plain multimodal rotary "mrope" (transformers: default)
        _check(rope_type in ("default", "mrope"),
               f"text_config rope_type {rope_type!r} is not supported (expected 'default')")
        kw["mlp_only_layers"] = list(kw.get("mlp_only_layers", []))
        kw["layer_types"] = list(kw.get("layer_types", []))
        cfg = cls(**kw)
        if not cfg.head_dim:
            cfg.head_dim = cfg.hidden_size // max(cfg.num_attention_heads, 1)
        cfg.validate()
        return cfg

    @property
    def rotary_dim(self) -> int:
        """Channels of each q/k head that rotate (the rest pass through unrotated)."""
        return int(self.head_dim * self.partial_rotary_factor)

    def is_linear_layer(self, i: int) -> bool:
        return bool(self.layer_types) and self.layer_types[i] == "linear_attention"

    def is_moe_layer(self, i: int) -> bool:
        return (i not in self.mlp_only_layers and self.num_experts > 0
                and (i + 1) % self.decoder_sparse_step == 0)

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim"):
            _check(getattr(self, name) > 0, f"text_config.{name} must be > 0, got "
                   f"{getattr(self, name)}")
        _check(self.num_attention_heads % self.num_key_value_heads == 0,
               f"text_config.num_attention_heads ({self.num_attention_heads}) must be a multiple "
               f"of num_key_value_heads ({self.num_key_value_heads})")
        _check(self.head_dim % 2 == 0, f"text_config.head_dim ({self.head_dim}) must be even")
        _check(len(self.mrope_section) == 3,
               f"text_config mrope_section must have 3 parts (T, H, W), got {self.mrope_section}")
        _check(0 < self.partial_rotary_factor <= 1 and self.rotary_dim % 2 == 0,
               f"text_config partial_rotary_factor {self.partial_rotary_factor} must be in (0, 1] "
               f"and give an even rotary dim (head_dim {self.head_dim})")
        half = ("head_dim/2" if self.rotary_dim == self.head_dim else
                f"rotary dim/2 (head_dim * partial_rotary_factor {self.partial_rotary_factor} / 2)")
        _check(sum(self.mrope_section) == self.rotary_dim // 2,
               f"text_config mrope_section {self.mrope_section} sums to "
               f"{sum(self.mrope_section)}, must equal {half} = {self.rotary_dim // 2}")
        if self.layer_types:
            self._validate_hybrid()
        if self.num_experts > 0:
            _check(1 <= self.num_experts_per_tok <= self.num_experts,
                   f"text_config.num_experts_per_tok ({self.num_experts_per_tok}) must be in "
                   f"1..num_experts ({self.num_experts})")
            _check(self.moe_intermediate_size > 0,
                   f"text_config.moe_intermediate_size must be > 0, got "
                   f"{self.moe_intermediate_size}")
            _check(self.decoder_sparse_step >= 1,
                   f"text_config.decoder_sparse_step must be >= 1, got {self.decoder_sparse_step}")
        _check(self.hidden_act == "silu",
               f"text_config.hidden_act {self.hidden_act!r} is not supported (expected 'silu')")
        _check(self.rms_norm_eps > 0, f"text_config.rms_norm_eps must be > 0, got "
               f"{self.rms_norm_eps}")

    def _validate_hybrid(self) -> None:
        _check(len(self.layer_types) == self.num_hidden_layers,
               f"text_config.layer_types has {len(self.layer_types)} entries for "
               f"{self.num_hidden_layers} layers")
        bad = sorted(set(self.layer_types) - {"linear_attention", "full_attention"})
        _check(not bad, f"text_config.layer_types has unknown types {bad} (expected "
               "'linear_attention' or 'full_attention')")
        for name in ("linear_conv_kernel_dim", "linear_key_head_dim", "linear_value_head_dim",
                     "linear_num_key_heads", "linear_num_value_heads"):
            _check(getattr(self, name) > 0, f"text_config.{name} must be > 0, got "
                   f"{getattr(self, name)}")
        _check(self.linear_num_value_heads % self.linear_num_key_heads == 0,
               f"text_config.linear_num_value_heads ({self.linear_num_value_heads}) must be a "
               f"multiple of linear_num_key_heads ({self.linear_num_key_heads})")


@dataclass
class ModelConfig:
    architecture: str
    model_type: str
    text: TextConfig
    vision: VisionConfig
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    tie_word_embeddings: bool = False
    raw: dict = field(default_factory=dict, repr=False)  # the config.json dict as read

    @property
    def family(self) -> str:
        return SUPPORTED_ARCHITECTURES[self.architecture]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        archs = d.get("architectures") or []
        known = [a for a in archs if a in SUPPORTED_ARCHITECTURES]
        if not known:
            raise ConfigError(
                f"unknown architecture {archs or d.get('model_type')!r}: this build runs "
                f"{sorted(SUPPORTED_ARCHITECTURES)} (config.json 'architectures')")
        text_d, vision_d = family_dicts(SUPPORTED_ARCHITECTURES[known[0]], d)
        text = TextConfig.from_dict(text_d)
        vision = VisionConfig.from_dict(vision_d)
        tie = bool(d.get("tie_word_embeddings", text_d.get("tie_word_embeddings", False)))
        cfg = cls(architecture=known[0], model_type=d.get("model_type", ""), text=text,
                  vision=vision, tie_word_embeddings=tie, raw=d,
                  **_pick_ids(d))
        _check(vision.out_hidden_size == text.hidden_size,
               f"vision_config.out_hidden_size ({vision.out_hidden_size}) must equal "
               f"text_config.hidden_size ({text.hidden_size})")
        _check(len(vision.deepstack_visual_indexes) <= text.num_hidden_layers,
               f"{len(vision.deepstack_visual_indexes)} DeepStack levels but only "
               f"{text.num_hidden_layers} decoder layers")
        # the ViT's activation is fixed by its block design (Qwen2.5-VL: SwiGLU, Qwen3: GELU)
        acts = ("silu",) if cfg.family == "qwen2_5_vl" else ("gelu_pytorch_tanh", "gelu")
        _check(vision.hidden_act in acts,
               f"vision_config.hidden_act {vision.hidden_act!r} is not supported for "
               f"{cfg.architecture} (expected {' or '.join(map(repr, acts))})")
        for name in ("image_token_id", "video_token_id", "vision_start_token_id",
                     "vision_end_token_id"):
            v = getattr(cfg, name)
            _check(0 <= v < text.vocab_size,
                   f"{name} {v} is outside the vocabulary (0..{text.vocab_size - 1})")
        return cfg


def family_dicts(family: str, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(text, vision) config dicts of a checkpoint, with what its family fixes filled in.

    qwen3_vl_moe: as read. qwen3_vl: the same model with a dense SwiGLU MLP in every layer.
    qwen3_5_moe / qwen3_5: the hybrid decoder (layer_types, derived from
    full_attention_interval when absent), vision without DeepStack; qwen3_5 is dense.
    qwen2_5_vl: Qwen2 decoder (q/k/v bias, no q/k norm, MRoPE sections in order, dense MLP)
    and a ViT without learned position table or DeepStack, windowed except the
    fullatt_block_indexes (transformers' defaults when the file omits them).
    """
    if "vision_config" not in d:
        raise ConfigError("config.json lacks 'vision_config'")
    vision = dict(d["vision_config"])
    if family == "qwen2_5_vl":
        # published files: text fields at the top level; transformers >= 4.52: text_config
        flat = {k: v for k, v in d.items() if k not in ("vision_config", "text_config")}
        text = dict(d.get("text_config") or flat)
        text.update(num_experts=0, qk_norm=False, qkv_bias=True, mrope_interleaved=False,
                    head_dim=0)  # Qwen2 attention: head_dim is always hidden / heads
        if "in_channels" not in vision and "in_chans" in vision:
            vision["in_channels"] = vision["in_chans"]
        vision.setdefault("window_size", 112)
        vision.setdefault("fullatt_block_indexes", [7, 15, 23, 31])
        vision.update(num_position_embeddings=0, deepstack_visual_indexes=[])
        return text, vision
    if "text_config" not in d:
        raise ConfigError("config.json lacks 'text_config'")
    text = dict(d["text_config"])
    if family in ("qwen3_vl", "qwen3_5"):
        text["num_experts"] = 0
    if family in HYBRID_FAMILIES:
        # no DeepStack; every layer of the MoE model is sparse; layer_types from the interval
        vision["deepstack_visual_indexes"] = []
        text.pop("mlp_only_layers", None)
        text.pop("decoder_sparse_step", None)
        if not text.get("layer_types"):
            every = int(text.get("full_attention_interval", 4))
            text["layer_types"] = [
                "full_attention" if (i + 1) % every == 0 else "linear_attention"
                for i in range(int(text.get("num_hidden_layers", 0)))]
    return text, vision


def _pick_ids(d: dict[str, Any]) -> dict[str, int]:
    keys = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return {k: int(d[k]) for k in keys if d.get(k) is not None}
