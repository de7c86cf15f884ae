"""Qwen3-VL-MoE text decoder: GQA attention with q/k RMSNorm and interleaved MRoPE, MoE MLP.

References: transformers `Qwen3VLMoeTextModel` (the oracle), gpt-fast for the shape of the
code. Module names equal the checkpoint's tensor names under `model.language_model.`.

Shapes: T tokens in this call, S tokens in the cache after it, H hidden, Hq/Hkv query/kv
heads, D head dim, E experts, I expert width. One sequence at a time (an agent has one).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import kernels
from vlm.cache import KVCache
from vlm.config import TextConfig
from vlm.layers import GatedMLP, RMSNorm, apply_rotary, packed_attention


def mrope_axis(cfg: TextConfig) -> torch.Tensor:
    """For each of the D/2 rotary frequencies, which position axis drives it (0 T, 1 H, 2 W).

    Interleaved layout (Qwen3-VL): frequency j uses H when j % 3 == 1 and j < 3*sec[1], W when
    j % 3 == 2 and j < 3*sec[2], else T, so every axis spans low and high frequencies.
    Sectioned layout (Qwen2.5-VL): the first sec[0] frequencies T, the next sec[1] H, then W.
    """
    if not cfg.mrope_interleaved:
        return torch.repeat_interleave(torch.arange(3), torch.tensor(cfg.mrope_section))
    axis = torch.zeros(cfg.head_dim // 2, dtype=torch.long)
    for a, offset in ((1, 1), (2, 2)):
        axis[offset: cfg.mrope_section[a] * 3: 3] = a
    return axis


def mrope_tables(cfg: TextConfig, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(inv_freq (D/2,) fp32, axis (D/2,) long) on `device`."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float) / d))
    return inv_freq.to(device), mrope_axis(cfg).to(device)


def mrope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, axis: torch.Tensor,
                  dtype: torch.dtype):
    """positions (3, T) int -> cos, sin (T, D) in `dtype` (angles computed in fp32)."""
    freqs = positions[..., None].float() * inv_freq  # (3, T, D/2)
    freqs = freqs.gather(0, axis.view(1, 1, -1).expand(1, freqs.shape[1], -1))[0]  # (T, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (T, D)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.hq, self.hkv, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        bias = cfg.attention_bias
        qkv_bias = bias or cfg.qkv_bias  # Qwen2 decoder: q/k/v biased, o_proj not
        self.q_proj = nn.Linear(cfg.hidden_size, self.hq * self.d, bias=qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.hkv * self.d, bias=qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.hkv * self.d, bias=qkv_bias)
        self.o_proj = nn.Linear(self.hq * self.d, cfg.hidden_size, bias=bias)
        # per head, before rotary (Qwen3); Qwen2 has none
        self.q_norm = RMSNorm(self.d, cfg.rms_norm_eps) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.d, cfg.rms_norm_eps) if cfg.qk_norm else nn.Identity()

    def forward(self, x, cos, sin, cache: KVCache | None, layer: int, start: int, cu_q, cu_k,
                max_len: int | None = None):
        """With a cache: the T queries continue one sequence. Without (training over packed
        samples, vlm/train_forward.py): K/V are this call's own, `cu_q` == `cu_k` mark the
        samples and `max_len` is the longest."""
        t = x.shape[0]
        q = self.q_norm(self.q_proj(x).view(t, self.hq, self.d))  # (T, Hq, D)
        k = self.k_norm(self.k_proj(x).view(t, self.hkv, self.d))  # (T, Hkv, D)
        v = self.v_proj(x).view(t, self.hkv, self.d)
        # rotated q lands head-major (Hq, T, D), as the cache keeps K/V: attention reads every
        # head's rows densely
        q = apply_rotary(q, cos, sin, out=q.new_empty(self.hq, t, self.d).transpose(0, 1))
        k = apply_rotary(k, cos, sin)
        if cache is None:
            k_all, v_all = k, v
        else:
            k_all, v_all = cache.update(layer, start, k, v)  # (S, Hkv, D)
        s = k_all.shape[0]
        g = self.hq // self.hkv
        if t == 1 and g > 1 and cache is not None:
            # decode: the g query heads sharing a kv head become g query rows of one sequence
            # (query head kv*g + j -> row j, head kv), so K/V are read once per kv head and
            # never expanded; one token sees every cached key, so causal == full here
            qp = q.view(self.hkv, g, self.d).transpose(0, 1).contiguous()  # (g, Hkv, D)
            o = packed_attention(qp, k_all, v_all, cu_q, cu_k, g, s, causal=False)
            return self.o_proj(o.transpose(0, 1).reshape(1, -1))  # (1, Hq*D)
        o = packed_attention(q, k_all, v_all, cu_q, cu_k, max_len or t, max_len or s,
                             causal=True)  # (T, Hq, D)
        return self.o_proj(o.reshape(t, -1))


class Experts(nn.Module):
    """Stacked expert weights in the published layout: y = x @ W (not nn.Linear's x @ W.T)."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        e, h, i = cfg.num_experts, cfg.hidden_size, cfg.moe_intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(e, h, 2 * i))  # gate columns, then up
        self.down_proj = nn.Parameter(torch.empty(e, i, h))


class Router(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cfg.num_experts, cfg.hidden_size))


class SparseMoe(nn.Module):
    """Router softmax (fp32) -> top-k -> renormalise -> SwiGLU experts, weighted sum."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.top_k = cfg.num_experts_per_tok
        self.gate = Router(cfg)
        self.experts = Experts(cfg)

    def forward(self, x):  # (T, H) -> (T, H)
        logits = F.linear(x, self.gate.weight)  # (T, E)
        return kernels.fused_moe(x, logits, self.experts.gate_up_proj, self.experts.down_proj,
                                 self.top_k, renormalize=True)


class DenseMLP(GatedMLP):
    def __init__(self, cfg: TextConfig):
        super().__init__(cfg.hidden_size, cfg.intermediate_size, bias=False)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig, index: int):
        super().__init__()
        self.index = index
        self.self_attn = Attention(cfg)
        self.mlp = SparseMoe(cfg) if cfg.is_moe_layer(index) else DenseMLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, cache, start, cu_q, cu_k):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, self.index, start,
                               cu_q, cu_k)
        return x + self.mlp(self.post_attention_layernorm(x))


class TextModel(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self._rope: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # not weights

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        start: int,
        visual_index: torch.Tensor | None = None,
        deepstack: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x (T, H) embeddings at cache slots start..start+T, positions (3, T) ->
        normed hidden (T, H). DeepStack: level l (Nv, H) is added at the rows `visual_index`
        (Nv,) after decoder layer l."""
        if x.device not in self._rope:
            self._rope[x.device] = mrope_tables(self.cfg, x.device)
        cos, sin = mrope_cos_sin(positions, *self._rope[x.device], x.dtype)
        t = x.shape[0]
        # one sequence: the T queries are the last T of the S = start + T cached keys; a
        # single decode token is packed as one row per query head of a kv group (Attention)
        rows = t if t > 1 else self.cfg.num_attention_heads // self.cfg.num_key_value_heads
        cu_q = torch.tensor([0, rows], dtype=torch.int32, device=x.device)
        cu_k = torch.tensor([0, start + t], dtype=torch.int32, device=x.device)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, start, cu_q, cu_k)
            if deepstack is not None and i < len(deepstack) and visual_index is not None:
                x = x.index_add(0, visual_index, deepstack[i].to(x.dtype))
        return self.norm(x)
