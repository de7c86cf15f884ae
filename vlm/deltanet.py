"""Gated DeltaNet: the linear-attention token mixer of the Qwen3.5 hybrid decoder.

References: transformers `Qwen3_5MoeGatedDeltaNet` (the oracle), the Gated DeltaNet paper
(Yang et al., 2024) for the recurrence; the math lives in kernels/delta_rule.py. Module
names equal the checkpoint's under `model.language_model.layers.N.linear_attn.`.

Per token: one projection gives q, k, v (through a depthwise causal conv of width K and
SiLU), others give the output gate z, the write strength beta = sigmoid(b) and the decay
g = -exp(A_log) * softplus(a + dt_bias) (log space, so the state shrinks by exp(g) <= 1).
The delta rule runs on L2-normalised q/k; a gated RMSNorm with z and out_proj follow.

State per sequence (held by the cache, fp32): recurrent (Hv, Dk, Dv), conv (C, K-1).
Shapes: T tokens, H hidden, Hk q/k heads, Hv value heads, Dk/Dv head dims,
C = 2*Hk*Dk + Hv*Dv conv channels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import kernels
from vlm.config import TextConfig


class GatedRMSNorm(nn.Module):
    """weight * rms_norm(x) * silu(z) per value head; rounding as transformers' RMSNormGated
    (normalise in fp32, cast, scale, gate in fp32, cast back)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * xf.to(x.dtype) * F.silu(z.float())).to(x.dtype)


class GatedDeltaNet(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.hk, self.hv = cfg.linear_num_key_heads, cfg.linear_num_value_heads
        self.dk, self.dv = cfg.linear_key_head_dim, cfg.linear_value_head_dim
        self.key_dim, self.value_dim = self.hk * self.dk, self.hv * self.dv
        self.conv_dim = 2 * self.key_dim + self.value_dim
        h = cfg.hidden_size
        self.in_proj_qkv = nn.Linear(h, self.conv_dim, bias=False)
        self.in_proj_z = nn.Linear(h, self.value_dim, bias=False)
        self.in_proj_b = nn.Linear(h, self.hv, bias=False)
        self.in_proj_a = nn.Linear(h, self.hv, bias=False)
        # nn.Conv1d's weight shape (C, 1, K), so checkpoints load unchanged; applied by kernels
        self.conv1d = nn.Module()
        self.conv1d.weight = nn.Parameter(torch.empty(self.conv_dim, 1,
                                                      cfg.linear_conv_kernel_dim))
        self.dt_bias = nn.Parameter(torch.ones(self.hv))
        self.A_log = nn.Parameter(torch.zeros(self.hv))
        self.norm = GatedRMSNorm(self.dv, cfg.rms_norm_eps)
        self.out_proj = nn.Linear(self.value_dim, h, bias=False)

    def forward(self, x: torch.Tensor, recurrent: torch.Tensor, conv: torch.Tensor,
                cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        """x (T, H) continuing the sequences whose states are `recurrent` (N, Hv, Dk, Dv)
        and `conv` (N, C, K-1) (fp32, updated in place) -> (T, H). A single token (decode)
        takes the recurrent path; otherwise the chunked prefill over the packed sequences of
        `cu_seqlens` (None: one sequence)."""
        if x.shape[0] == 1 and cu_seqlens is None:
            return self.decode_step(x, recurrent, conv)
        qkv, conv_final = kernels.causal_conv1d(self.in_proj_qkv(x), self.conv1d.weight[:, 0],
                                                initial_state=conv, cu_seqlens=cu_seqlens)
        q, k, v = self._heads(qkv)
        beta, g = self._gates(x)
        o, final = kernels.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=recurrent,
                                                  cu_seqlens=cu_seqlens, use_qk_l2norm=True)
        with torch.no_grad():  # the cache keeps values; training does not carry states
            recurrent.copy_(final)
            conv.copy_(conv_final)
        return self._output(x, o)

    def decode_step(self, x: torch.Tensor, recurrent: torch.Tensor,
                    conv: torch.Tensor) -> torch.Tensor:
        """One token x (1, H) of one sequence: the conv state shifts and the delta rule
        advances `recurrent` (1, Hv, Dk, Dv) in place -> (1, H). Fixed shapes and no host
        reads, so it runs inside a compiled or captured decode step."""
        qkv = kernels.causal_conv1d_update(self.in_proj_qkv(x), conv, self.conv1d.weight[:, 0])
        q, k, v = self._heads(qkv)
        beta, g = self._gates(x)
        o = kernels.recurrent_gated_delta_rule(q, k, v, g, beta, recurrent, use_qk_l2norm=True)
        return self._output(x, o)

    def _heads(self, qkv: torch.Tensor):
        """(T, C) convolved projections -> q, k (T, Hk, Dk), v (T, Hv, Dv)."""
        t = qkv.shape[0]
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        return (q.reshape(t, self.hk, self.dk), k.reshape(t, self.hk, self.dk),
                v.reshape(t, self.hv, self.dv))

    def _gates(self, x: torch.Tensor):
        """x (T, H) -> write strength beta (T, Hv), log decay g (T, Hv) fp32."""
        beta = self.in_proj_b(x).sigmoid()
        # in fp32: in half precision exp(A_log) * softplus could round the decay to -inf
        g = -self.A_log.float().exp() * F.softplus(self.in_proj_a(x).float() + self.dt_bias)
        return beta, g

    def _output(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Delta-rule output o (T, Hv, Dv) -> gated RMSNorm with z(x) -> out_proj (T, H)."""
        t = x.shape[0]
        z = self.in_proj_z(x).reshape(t * self.hv, self.dv)
        o = self.norm(o.reshape(t * self.hv, self.dv), z)
        return self.out_proj(o.reshape(t, self.value_dim))
