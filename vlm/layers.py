"""Building blocks shared by every model family: RMSNorm, rotary helpers, packed attention.

Kept as plain functions and tiny modules so a second family (Qwen2.5-VL, dense Qwen3-VL)
reuses them instead of copying. The heavy ops go through `kernels` (one dispatch point:
PyTorch references now, Triton/flash-attn when the kernels package provides them).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import kernels


class RMSNorm(nn.Module):
    """y = x / rms(x) * weight, computed in fp32 and cast back (as transformers' Qwen norm)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.rms_norm(x, self.weight, self.eps)


class GatedMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)); the dense decoder MLP and Qwen2.5-VL's ViT MLP."""

    def __init__(self, dim: int, inner: int, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(dim, inner, bias=bias)
        self.up_proj = nn.Linear(dim, inner, bias=bias)
        self.down_proj = nn.Linear(inner, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, dim) -> (T, dim)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def run_block(block, checkpointed: bool, *args):
    """block(*args), recomputed in the backward pass instead of keeping its activations when
    `checkpointed` (training with gradient checkpointing: torch.utils.checkpoint,
    non-reentrant, so frozen inputs and keyword-free calls both work)."""
    if checkpointed and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last dim's halves: the "non-interleaved" rotary pairing."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """x (T, heads, D); cos/sin (T, D) broadcast over heads -> x*cos + rotate_half(x)*sin.

    Every Qwen rotary table repeats the same D/2 angles in both halves, so the result is
    computed by halves, (x1*c - x2*s, x2*c + x1*s), straight into one output (`out`, any
    layout, when given): no negated or concatenated copies of x, half-width reads of cos/sin.
    """
    if torch.is_grad_enabled() and x.requires_grad:  # out= ops do not record autograd
        y = x * cos[:, None, :] + rotate_half(x) * sin[:, None, :]
        return y if out is None else out.copy_(y)
    half = x.shape[-1] // 2
    c, s = cos[:, None, :half], sin[:, None, :half]  # (T, 1, D/2)
    x1, x2 = x[..., :half], x[..., half:]
    if out is None:
        out = torch.empty(x.shape, dtype=torch.result_type(x, cos), device=x.device)
    torch.mul(x1, c, out=out[..., :half]).addcmul_(x2, s, value=-1)
    torch.mul(x2, c, out=out[..., half:]).addcmul_(x1, s)
    return out


def packed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_q: int,
    max_k: int,
    *,
    causal: bool,
) -> torch.Tensor:
    """q (Tq, Hq, D), k/v (Tk, Hkv, D) packed sequences -> (Tq, Hq, D) via kernels."""
    return kernels.varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_q, max_k,
                                    causal=causal)
