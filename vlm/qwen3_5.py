"""Qwen3.5 text decoder (Qwen3.5-MoE: Qwen3.5-35B-A3B, Holo3; dense Qwen3.5): a hybrid of
Gated DeltaNet layers and gated full-attention layers, by `layer_types` (3 of 4 linear).

References: transformers `Qwen3_5MoeTextModel` / `Qwen3_5TextModel` (the oracles). The rest
of the family is shared: the vision tower is vision.py's Qwen3-VL ViT without DeepStack
(config.family_dicts empties the DeepStack levels), the model wrapper and rope index are
model.py's. What differs from text.py's Qwen3-VL decoder:
- RMSNorms are zero-centred: y = norm(x) * (1 + weight), the product in fp32.
- Attention: q_proj also yields a per-channel output gate (o * sigmoid(gate) before o_proj);
  rotary covers only the first `partial_rotary_factor` of each head (interleaved MRoPE on it).
- Linear-attention layers (deltanet.py) carry a recurrent and a convolution state.
- MoE: routed experts (softmax top-k, renormalised) plus a shared SwiGLU expert scaled by
  sigmoid(shared_expert_gate(x)); the dense model has one SwiGLU MLP per layer instead.
Module names equal the checkpoint's under `model.language_model.`.

Shapes: T tokens in this call, S tokens cached after it, H hidden, Hq/Hkv heads, D head dim,
R rotary dim, E experts.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

import kernels
from vlm.config import TextConfig
from vlm.deltanet import GatedDeltaNet
from vlm.hybrid_cache import HybridCache
from vlm.layers import GatedMLP, apply_rotary, packed_attention, rotate_half
from vlm.text import (
    DenseMLP,
    Experts,
    Router,
    decode_attention,
    mrope_cos_sin,
    mrope_tables,
)


class ZeroCenteredRMSNorm(nn.Module):
    """x / rms(x) * (1 + weight), computed in fp32 and cast back (weights stored around 0)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * (1.0 + self.weight.float())).to(x.dtype)


class GatedAttention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.hq, self.hkv, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.rot = cfg.rotary_dim
        bias = cfg.attention_bias
        self.q_proj = nn.Linear(cfg.hidden_size, 2 * self.hq * self.d, bias=bias)  # q, gate
        self.k_proj = nn.Linear(cfg.hidden_size, self.hkv * self.d, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.hkv * self.d, bias=bias)
        self.o_proj = nn.Linear(self.hq * self.d, cfg.hidden_size, bias=bias)
        self.q_norm = ZeroCenteredRMSNorm(self.d, cfg.rms_norm_eps)
        self.k_norm = ZeroCenteredRMSNorm(self.d, cfg.rms_norm_eps)

    def _rotate(self, x, cos, sin):  # (T, heads, D): rotary on the first R channels only
        if self.rot == self.d:
            return apply_rotary(x, cos, sin)
        return torch.cat([apply_rotary(x[..., : self.rot], cos, sin), x[..., self.rot:]], -1)

    def forward(self, x, cos, sin, cache, slot: int, start: int):
        t = x.shape[0]
        q, gate = self.q_proj(x).view(t, self.hq, 2 * self.d).chunk(2, dim=-1)  # (T, Hq, D)
        q = self._rotate(self.q_norm(q), cos, sin)
        k = self._rotate(self.k_norm(self.k_proj(x).view(t, self.hkv, self.d)), cos, sin)
        v = self.v_proj(x).view(t, self.hkv, self.d)
        k_all, v_all = cache.update(slot, start, k, v)  # (S, Hkv, D)
        s = k_all.shape[0]
        cu_q = torch.tensor([0, t], dtype=torch.int32, device=x.device)
        cu_k = torch.tensor([0, s], dtype=torch.int32, device=x.device)
        o = packed_attention(q, k_all, v_all, cu_q, cu_k, t, s, causal=True)  # (T, Hq, D)
        o = o.reshape(t, -1) * torch.sigmoid(gate.reshape(t, -1))
        return self.o_proj(o)

    def decode(self, x, cos, sin, cache: HybridCache, layer: int, slot: torch.Tensor):
        """x (1, H) at cache row `slot` ((1,) long, device) -> (1, H); no host values."""
        q, gate = self.q_proj(x).view(1, self.hq, 2 * self.d).chunk(2, dim=-1)  # (1, Hq, D)
        q = self._rotate_token(self.q_norm(q), cos, sin)
        k = self._rotate_token(self.k_norm(self.k_proj(x).view(1, self.hkv, self.d)), cos, sin)
        v = self.v_proj(x).view(1, self.hkv, self.d)
        k_all, v_all = cache.write_token(layer, slot, k, v)  # (Hkv, C, D)
        # query head kv*g + j is row j of kv head kv: K/V are read once per kv head
        o = decode_attention(q.reshape(self.hkv, self.hq // self.hkv, self.d), k_all, v_all,
                             slot)  # (Hkv, g, D)
        o = o.reshape(1, -1) * torch.sigmoid(gate.reshape(1, -1))
        return self.o_proj(o)

    def _rotate_token(self, x, cos, sin):  # (1, heads, D): _rotate without out= writes
        # the plain rotary formula, as text.Attention.decode: apply_rotary's out= writes do
        # not trace, and at one token there are no copies worth avoiding
        c, s = cos[:, None, :], sin[:, None, :]
        r = x[..., : self.rot]
        r = r * c + rotate_half(r) * s
        return r if self.rot == self.d else torch.cat([r, x[..., self.rot:]], -1)


class SharedExpertMoe(nn.Module):
    """Routed experts (softmax fp32 -> top-k -> renormalise) + a gated shared expert."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.top_k = cfg.num_experts_per_tok
        self.gate = Router(cfg)
        self.experts = Experts(cfg)
        self.shared_expert = GatedMLP(cfg.hidden_size, cfg.shared_expert_intermediate_size,
                                      bias=False)
        self.shared_expert_gate = nn.Linear(cfg.hidden_size, 1, bias=False)

    def forward(self, x):  # (T, H) -> (T, H)
        logits = F.linear(x, self.gate.weight)  # (T, E)
        routed = kernels.fused_moe(x, logits, self.experts.gate_up_proj, self.experts.down_proj,
                                   self.top_k, renormalize=True)
        return routed + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)


class HybridDecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig, index: int):
        super().__init__()
        self.index = index
        self.linear = cfg.is_linear_layer(index)
        if self.linear:
            self.linear_attn = GatedDeltaNet(cfg)
        else:
            self.self_attn = GatedAttention(cfg)
        self.mlp = SharedExpertMoe(cfg) if cfg.num_experts > 0 else DenseMLP(cfg)
        self.input_layernorm = ZeroCenteredRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = ZeroCenteredRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, cache: HybridCache, start: int):
        h = self.input_layernorm(x)
        if self.linear:
            recurrent, conv = cache.linear_state(self.index)
            h = self.linear_attn(h, recurrent, conv)
        else:
            h = self.self_attn(h, cos, sin, cache, self.index, start)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x))

    def decode(self, x, cos, sin, cache: HybridCache, slot: torch.Tensor):
        h = self.input_layernorm(x)
        if self.linear:
            recurrent, conv = cache.linear_state(self.index)
            h = self.linear_attn.decode_step(h, recurrent, conv)
        else:
            h = self.self_attn.decode(h, cos, sin, cache, self.index, slot)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x))


class HybridTextModel(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(HybridDecoderLayer(cfg, i)
                                    for i in range(cfg.num_hidden_layers))
        self.norm = ZeroCenteredRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        # MRoPE tables over the rotary part of each head only (R = partial_rotary_factor * D)
        self._rope_cfg = dataclasses.replace(cfg, head_dim=cfg.rotary_dim)
        self._rope: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # not weights

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: HybridCache, start: int,
                visual_index: torch.Tensor | None = None,
                deepstack: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x (T, H) embeddings continuing the cached sequence at `start`, positions (3, T)
        -> normed hidden (T, H). (No DeepStack in this family: `deepstack` must be empty.)"""
        if deepstack:
            raise ValueError("Qwen3.5 has no DeepStack levels, got "
                             f"{len(deepstack)} DeepStack feature sets")
        if x.device not in self._rope:
            self._rope[x.device] = mrope_tables(self._rope_cfg, x.device)
        cos, sin = mrope_cos_sin(positions, *self._rope[x.device], x.dtype)  # (T, R)
        cache.begin(start)
        for layer in self.layers:
            x = layer(x, cos, sin, cache, start)
        cache.end(start + x.shape[0], snapshot=x.shape[0] > 1)
        return self.norm(x)

    def decode(self, x: torch.Tensor, positions: torch.Tensor, cache: HybridCache,
               slot: torch.Tensor) -> torch.Tensor:
        """One token: x (1, H) at cache row `slot` ((1,) long), positions (3, 1), both on
        the device -> normed hidden (1, H); K/V rows and DeltaNet states change in place.
        Fixed shapes, nothing read back to the host, so it traces with fullgraph=True and
        captures into a CUDA graph. It leaves the host bookkeeping of where the states are
        (`cache.live`) to the caller: see hybrid_cache's begin/end."""
        if x.device not in self._rope:
            self._rope[x.device] = mrope_tables(self._rope_cfg, x.device)
        cos, sin = mrope_cos_sin(positions, *self._rope[x.device], x.dtype)  # (1, R)
        for layer in self.layers:
            x = layer.decode(x, cos, sin, cache, slot)
        return self.norm(x)


def new_hybrid_cache(cfg: TextConfig, capacity: int, dtype, device) -> HybridCache:
    return HybridCache(cfg, capacity, dtype, device)
