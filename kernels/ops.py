"""The dispatched ops as torch custom ops, so `torch.compile(fullgraph=True)` traces through
a model that calls them.

Each public op in `kernels/__init__.py` picks its implementation per call (dispatch.py) with
plain Python: which Triton launcher, flash-attn, or the reference. Dynamo cannot trace into a
Triton launcher (nor flash-attn's extension), and the references read host-side shapes in
ways that are fine eagerly. Registered as `torch.ops.deskpilot.*` with fake (meta)
implementations that only describe the output, each op is one opaque node of the compiled
graph: no graph break, and the CUDA-graph capture of a compiled decode step records the
kernels the op launches.

The public functions call these ops only while torch.compile is tracing; eager calls run the
implementation directly, skipping the custom-op dispatcher's per-call cost (tens of
microseconds each, times ~6 ops x 48 layers in an eager decode step). Calls that autograd
must record (training) never come here: they run the differentiable flash-attn or reference
directly.
"""

from __future__ import annotations

import torch

from kernels import dispatch

LIBRARY = "deskpilot"


def run_varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q: int,
                         max_seqlen_k: int, causal: bool, softmax_scale: float | None):
    """The implementation dispatch picks for one varlen call (autograd calls included)."""
    grad = dispatch.wants_grad(q, k, v)
    d = q.shape[-1]
    if not grad and dispatch.choose("decode_attention", q.device, q.dtype, d) == "triton":
        from kernels import decode as dec

        # a few query rows over a long KV: split the keys across programs (flash-decoding)
        batch = cu_seqlens_q.shape[0] - 1
        if dec.splits_for(max_seqlen_q, batch, q.shape[1], max_seqlen_k, q.device) > 1:
            return dec.split_kv_varlen_attention(
                q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                causal=causal, softmax_scale=softmax_scale)
    which = dispatch.choose("attention", q.device, q.dtype, d, grad=grad)
    if which == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                      max_seqlen_k, softmax_scale=softmax_scale, causal=causal)
    from kernels import attention

    impl = attention.varlen_attention if which == "triton" else attention.varlen_attention_ref
    return impl(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                causal=causal, softmax_scale=softmax_scale)


def run_decode_attention(q, k_cache, v_cache, cache_seqlens, softmax_scale: float | None):
    from kernels import decode as dec

    grad = dispatch.wants_grad(q, k_cache, v_cache)
    which = dispatch.choose("decode_attention", q.device, q.dtype, q.shape[-1], grad=grad)
    g = q.shape[1] // max(k_cache.shape[1], 1)
    if which == "triton" and g <= dec.DECODE_MAX_ROWS:
        return dec.decode_attention(q, k_cache, v_cache, cache_seqlens,
                                    softmax_scale=softmax_scale)
    return dec.decode_attention_ref(q, k_cache, v_cache, cache_seqlens,
                                    softmax_scale=softmax_scale)


def run_fused_moe(x, router_logits, w_gate_up, w_down, top_k: int, renormalize: bool):
    from kernels import moe

    grad = dispatch.wants_grad(x, router_logits, w_gate_up, w_down)
    which = dispatch.choose("moe", x.device, x.dtype, grad=grad)
    impl = moe.fused_moe if which == "triton" else moe.fused_moe_ref
    return impl(x, router_logits, w_gate_up, w_down, top_k, renormalize=renormalize)


def run_rms_norm(x, weight, eps: float, residual=None):
    from kernels import rmsnorm

    tensors = (x, weight) if residual is None else (x, weight, residual)
    which = dispatch.choose("rms_norm", x.device, x.dtype, grad=dispatch.wants_grad(*tensors))
    impl = rmsnorm.rms_norm if which == "triton" else rmsnorm.rms_norm_ref
    return impl(x, weight, eps, residual=residual)


@torch.library.custom_op(f"{LIBRARY}::varlen_attention", mutates_args=())
def varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int, causal: bool,
    softmax_scale: float | None,
) -> torch.Tensor:
    return run_varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                max_seqlen_k, causal, softmax_scale)


@varlen_attention.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, softmax_scale):
    return torch.empty_like(q)  # (total_q, Hq, D)


@torch.library.custom_op(f"{LIBRARY}::decode_attention", mutates_args=())
def decode_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor,
    softmax_scale: float | None,
) -> torch.Tensor:
    return run_decode_attention(q, k_cache, v_cache, cache_seqlens, softmax_scale)


@decode_attention.register_fake
def _(q, k_cache, v_cache, cache_seqlens, softmax_scale):
    return torch.empty_like(q)  # (B, Hq, D)


@torch.library.custom_op(f"{LIBRARY}::fused_moe", mutates_args=())
def fused_moe(
    x: torch.Tensor, router_logits: torch.Tensor, w_gate_up: torch.Tensor,
    w_down: torch.Tensor, top_k: int, renormalize: bool,
) -> torch.Tensor:
    return run_fused_moe(x, router_logits, w_gate_up, w_down, top_k, renormalize)


@fused_moe.register_fake
def _(x, router_logits, w_gate_up, w_down, top_k, renormalize):
    return torch.empty_like(x)  # (T, H)


@torch.library.custom_op(f"{LIBRARY}::rms_norm", mutates_args=())
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return run_rms_norm(x, weight, eps)


@rms_norm.register_fake
def _(x, weight, eps):
    return x.new_empty(x.shape, dtype=torch.promote_types(weight.dtype, x.dtype))


@torch.library.custom_op(f"{LIBRARY}::rms_norm_residual", mutates_args=())
def rms_norm_residual(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    y, new_residual = run_rms_norm(x, weight, eps, residual)
    return y, new_residual


@rms_norm_residual.register_fake
def _(x, weight, eps, residual):
    y = x.new_empty(x.shape, dtype=torch.promote_types(weight.dtype, x.dtype))
    return y, torch.empty_like(x)
