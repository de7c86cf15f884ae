"""deskpilot's kernels: one dispatch point for attention, MoE, RMSNorm and the delta rule.

This is deskpilot's own package, not Hugging Face's `kernels` hub package (it has no
`__version__` and no distribution named `kernels`, so transformers' `is_kernels_available()`
stays False; tests/test_kernels_not_hf.py checks this).

Importing it is cheap: neither torch nor Triton is imported until an op is first called.
The Triton kernels are forward-only: a call that autograd would record runs flash-attn or the
reference instead.
Which implementation runs is decided once (see kernels/dispatch.py): flash-attn -> Triton on
CUDA -> plain PyTorch; `DESKPILOT_KERNELS=torch|triton` forces one.
Under torch.compile each op is a registered custom op (`torch.ops.deskpilot.*`, see
kernels/ops.py), so a compiled model traces through them without graph breaks.
"""

from __future__ import annotations

from kernels import dispatch

__all__ = [
    "varlen_attention",
    "decode_attention",
    "fused_moe",
    "rms_norm",
    "route",
    "chunk_gated_delta_rule",
    "recurrent_gated_delta_rule",
    "causal_conv1d",
    "causal_conv1d_update",
    "backend",
    "reset_backend",
]


def _ops():
    """kernels.ops registers the torch custom ops (importing torch): done on first use."""
    from kernels import ops

    return ops


def _compiling() -> bool:
    import torch

    return torch.compiler.is_compiling()


def varlen_attention(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q: int,
    max_seqlen_k: int,
    *,
    causal: bool = False,
    softmax_scale: float | None = None,
):
    """Packed attention: q (total_q, Hq, D), k/v (total_k, Hkv, D) -> (total_q, Hq, D).

    `cu_seqlens_*` are int32 cumulative starts with a leading 0; Hq is a multiple of Hkv.
    With `causal` and seqlen_k > seqlen_q, queries align to the END of their key sequence.
    Calls with at most 16 query rows per sequence over a long KV (decode) take the split-K
    kernel on Triton (kernels/decode.py).
    """
    args = (q, k, v, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q), int(max_seqlen_k), causal,
            softmax_scale)
    ops = _ops()
    if _compiling() and not dispatch.wants_grad(q, k, v):
        import torch

        return torch.ops.deskpilot.varlen_attention(*args)
    return ops.run_varlen_attention(*args)


def decode_attention(q, k_cache, v_cache, cache_seqlens, *, softmax_scale: float | None = None):
    """One query token per sequence over a KV cache: q (B, Hq, D), k/v (B, Hkv, S, D) head-major
    (any strides with a dense head dim), cache_seqlens (B,) int32 -> (B, Hq, D); query b sees
    keys [0, cache_seqlens[b]). Split-K (flash-decoding) on Triton; nothing is read back to the
    host, so a CUDA graph per cache capacity stays valid.
    """
    ops = _ops()
    if _compiling() and not dispatch.wants_grad(q, k_cache, v_cache):
        import torch

        return torch.ops.deskpilot.decode_attention(q, k_cache, v_cache, cache_seqlens,
                                                    softmax_scale)
    return ops.run_decode_attention(q, k_cache, v_cache, cache_seqlens, softmax_scale)


def fused_moe(x, router_logits, w_gate_up, w_down, top_k: int, *, renormalize: bool = True):
    """Mixture of experts: x (T, H), router_logits (T, E), w_gate_up (E, H, 2I) gate first,
    w_down (E, I, H) -> y (T, H) = sum over the top_k experts of w_k * down(silu(gate) * up).
    """
    ops = _ops()
    if _compiling() and not dispatch.wants_grad(x, router_logits, w_gate_up, w_down):
        import torch

        return torch.ops.deskpilot.fused_moe(x, router_logits, w_gate_up, w_down, int(top_k),
                                             renormalize)
    return ops.run_fused_moe(x, router_logits, w_gate_up, w_down, top_k, renormalize)


def rms_norm(x, weight, eps: float, *, residual=None):
    """y = x / rms(x) * weight over the last dim; with `residual`, returns
    (norm(x + residual), x + residual)."""
    ops = _ops()
    tensors = (x, weight) if residual is None else (x, weight, residual)
    if _compiling() and not dispatch.wants_grad(*tensors):
        import torch

        if residual is None:
            return torch.ops.deskpilot.rms_norm(x, weight, float(eps))
        return torch.ops.deskpilot.rms_norm_residual(x, weight, float(eps), residual)
    return ops.run_rms_norm(x, weight, eps, residual)


def route(router_logits, top_k: int, renormalize: bool = True):
    """Softmax in fp32 -> top-k -> optional renormalise: (weights fp32, ids int64), (T, k)."""
    from kernels import moe

    return moe.route(router_logits, top_k, renormalize)


def chunk_gated_delta_rule(q, k, v, g, beta, *, scale=None, initial_state=None, cu_seqlens=None,
                           use_qk_l2norm: bool = False):
    """Gated delta rule over packed prefill sequences: q/k (T, Hk, Dk), v (T, Hv, Dv),
    g/beta (T, Hv), initial_state (N, Hv, Dk, Dv) fp32 or None ->
    (o (T, Hv, Dv), final states (N, Hv, Dk, Dv) fp32). See kernels/delta_rule.py."""
    from kernels import delta_rule

    grad = dispatch.wants_grad(q, k, v, g, beta)
    which = dispatch.choose("delta_rule", q.device, q.dtype, grad=grad)
    if which == "fla":
        return delta_rule.fla_chunk(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                    cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm)
    impl = (delta_rule.chunk_gated_delta_rule if which == "triton"
            else delta_rule.chunk_gated_delta_rule_ref)
    return impl(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm)


def recurrent_gated_delta_rule(q, k, v, g, beta, state, *, scale=None,
                               use_qk_l2norm: bool = False):
    """One decode token per sequence: q/k (N, Hk, Dk), v (N, Hv, Dv), g/beta (N, Hv);
    state (N, Hv, Dk, Dv) fp32 is advanced in place -> o (N, Hv, Dv)."""
    from kernels import delta_rule

    if _compiling():  # the launchers are not traced; the reference has no host reads
        return delta_rule.recurrent_step_ref(q, k, v, g, beta, state, scale=scale,
                                             use_qk_l2norm=use_qk_l2norm)
    which = dispatch.choose("delta_rule", q.device, q.dtype,
                            grad=dispatch.wants_grad(q, k, v, g, beta))
    if which == "fla":
        return delta_rule.fla_recurrent_step(q, k, v, g, beta, state, scale=scale,
                                             use_qk_l2norm=use_qk_l2norm)
    impl = (delta_rule.recurrent_step if which == "triton" else delta_rule.recurrent_step_ref)
    return impl(q, k, v, g, beta, state, scale=scale, use_qk_l2norm=use_qk_l2norm)


def causal_conv1d(x, weight, *, initial_state=None, cu_seqlens=None):
    """Depthwise causal conv + SiLU over packed sequences: x (T, C), weight (C, K) ->
    (y (T, C), final states (N, C, K-1) fp32)."""
    from kernels import delta_rule

    return delta_rule.causal_conv1d_ref(x, weight, initial_state=initial_state,
                                        cu_seqlens=cu_seqlens)


def causal_conv1d_update(x, state, weight):
    """One token per sequence: x (N, C), state (N, C, K-1) fp32 shifted in place -> y (N, C)."""
    from kernels import delta_rule

    if _compiling():  # as recurrent_gated_delta_rule
        return delta_rule.causal_conv1d_update_ref(x, state, weight)
    which = dispatch.choose("conv1d", x.device, x.dtype,
                            grad=dispatch.wants_grad(x, weight))
    impl = (delta_rule.causal_conv1d_update if which == "triton"
            else delta_rule.causal_conv1d_update_ref)
    return impl(x, state, weight)


def backend(op: str = "attention") -> str:
    """"flash_attn", "triton" or "torch": what `op` runs on CUDA half-precision data."""
    return dispatch.backend(op)


def reset_backend() -> str:
    """Re-read DESKPILOT_KERNELS and the installed packages; returns `backend()`."""
    dispatch.reset()
    return dispatch.backend()
