"""Gated delta rule (Gated DeltaNet's linear attention) and its short causal convolution.

The recurrence, per sequence and value head, with state S (Dk, Dv) carried across tokens:

    S <- exp(g_t) * S                       decay (g_t <= 0, log space)
    u_t = beta_t * (v_t - S^T k_t)          delta rule: write only what S does not predict
    S <- S + k_t u_t^T
    o_t = S^T (scale * q_t)

q/k heads are shared by Hv / Hk consecutive value heads (grouped value attention); q and k
are L2-normalised first when `use_qk_l2norm` (as the model does, in fp32).

Chunked form (prefill, chunks of C = 64 tokens; G = cumsum(g) inside the chunk, S0 the state
entering it): with L_tj = beta_t exp(G_t - G_j) k_t.k_j for j < t (strictly lower),
    U  = (I + L)^-1 (beta V  -  beta exp(G) K S0)          the WY / UT representation
    O  = exp(G) Q S0 + (Q K^T * exp(G_t - G_j))_{j<=t} U    intra-chunk as matmuls
    S1 = exp(G_C) S0 + (exp(G_C - G) K)^T U                 the state carried to the next chunk

Packed sequences: tensors are flat over T tokens of N sequences with `cu_seqlens` (N+1,)
int starts (None: one sequence); each sequence starts from its own initial state.

Shapes: T tokens, N sequences, Hk q/k heads, Hv value heads, Dk/Dv head dims, C conv
channels, K conv width; states are fp32: recurrent (N, Hv, Dk, Dv), conv (N, C, K-1).

File order: the Triton kernels (chunked prefill, recurrent decode step, conv update) and
their launchers, flash-linear-attention adapters, then the plain-PyTorch references
(differentiable: the trainer's path, and the oracle of the kernel tests).

Chunked kernel, one program per (sequence, value head, block of Dv): the state block
(Dk, BV) stays in registers across the sequence's chunks; per chunk L and the (I + L)^-1
solve (forward substitution over the 64 rows of the chunk tile) are computed once, then U,
O and the next state are three matmul groups (tl.dot). Rows past the sequence end load as
zeros with beta = g = 0, which leaves U, O and the state unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._triton import check_device, interpreting, round_to, tl, triton

CHUNK = 64
# the kernels' dots run on fp32 operands with IEEE fp32 products: the delta rule feeds its
# own outputs back (U through the solve, the state across chunks), so TF32's 10-bit
# mantissa would compound; fp32 is also what the reference computes in
_PRECISION = tl.constexpr("ieee")


@triton.jit
def _chunk_kernel(
    # pointers: q/k (T, Hk, Dk), v/o (T, Hv, Dv), g/beta (T, Hv), states (N, Hv, Dk, Dv)
    Q, K, V, G, BETA, H0, O, HT, CU,
    # sizes
    Hk, Hv, Dk, Dv, scale,
    # meta-parameters
    BT: tl.constexpr,  # chunk length (64)
    BK: tl.constexpr,  # next power of two >= Dk (>= 16 for tl.dot)
    BV: tl.constexpr,  # value columns per program
    HAS_H0: tl.constexpr,  # start from initial states (else zeros)
    L2NORM: tl.constexpr,  # L2-normalise q and k rows first
    INTERPRET: tl.constexpr,  # CPU interpreter: round bf16 by hand (see kernels/_triton.py)
):
    seq_head = tl.program_id(0)
    n, h = seq_head // Hv, seq_head % Hv
    hk = h // (Hv // Hk)  # q/k head serving this value head
    bos = tl.load(CU + n).to(tl.int32)
    eos = tl.load(CU + n + 1).to(tl.int32)
    rk = tl.arange(0, BK)
    rv = tl.program_id(1) * BV + tl.arange(0, BV)
    rt = tl.arange(0, BT)
    km, vm = rk < Dk, rv < Dv
    state_off = (seq_head * Dk + rk[:, None]) * Dv + rv[None, :]
    state_mask = km[:, None] & vm[None, :]
    if HAS_H0:
        S = tl.load(H0 + state_off, mask=state_mask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros((BK, BV), dtype=tl.float32)
    causal = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    for c in range(bos, eos, BT):
        t = c + rt
        tm = t < eos
        qk_off = (t[:, None] * Hk + hk) * Dk + rk[None, :]
        qk_mask = tm[:, None] & km[None, :]
        q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)  # (BT, BK)
        k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
        if L2NORM:
            q = q / tl.sqrt(tl.sum(q * q, axis=1) + 1e-6)[:, None]
            k = k / tl.sqrt(tl.sum(k * k, axis=1) + 1e-6)[:, None]
        q = q * scale
        v = tl.load(V + (t[:, None] * Hv + h) * Dv + rv[None, :],
                    mask=tm[:, None] & vm[None, :], other=0.0).to(tl.float32)  # (BT, BV)
        g = tl.load(G + t * Hv + h, mask=tm, other=0.0).to(tl.float32)  # (BT,)
        beta = tl.load(BETA + t * Hv + h, mask=tm, other=0.0).to(tl.float32)
        Gc = tl.cumsum(g, axis=0)  # log decay from the chunk start to each row
        decay = tl.where(causal, tl.exp(Gc[:, None] - Gc[None, :]), 0.0)  # (BT, BT)
        kk = tl.dot(k, tl.trans(k), input_precision=_PRECISION)
        # X = (I + L)^-1 by forward substitution: X = I + T, T_i = M_i + M_i @ T with
        # M = -L (strictly lower); row i only reads the finished rows above it. Rows past
        # the sequence end have beta = 0, so M_i = 0 and they need no step (a short chunk,
        # e.g. the new suffix of an agent step, costs its own length)
        T = tl.where(strict, -beta[:, None] * kk * decay, 0.0)
        for i in range(1, tl.minimum(eos - c, BT)):
            sel = rt[:, None] == i
            row = tl.sum(tl.where(sel, T, 0.0), axis=0)  # M_i
            T = tl.where(sel, (row + tl.sum(row[:, None] * T, axis=0))[None, :], T)
        X = T + tl.where(rt[:, None] == rt[None, :], 1.0, 0.0)
        eg = tl.exp(Gc)
        rhs = beta[:, None] * v - tl.dot(beta[:, None] * eg[:, None] * k, S,
                                         input_precision=_PRECISION)
        U = tl.dot(X, rhs, input_precision=_PRECISION)  # (BT, BV)
        qk = tl.dot(q, tl.trans(k), input_precision=_PRECISION) * decay
        o = tl.dot(eg[:, None] * q, S, input_precision=_PRECISION) + tl.dot(
            qk, U, input_precision=_PRECISION)
        tl.store(O + (t[:, None] * Hv + h) * Dv + rv[None, :],
                 round_to(o, O.dtype.element_ty, INTERPRET), mask=tm[:, None] & vm[None, :])
        last = tl.sum(tl.where(rt == BT - 1, Gc, 0.0), axis=0)  # masked rows add g = 0
        kd = tl.exp(last - Gc)[:, None] * k
        S = tl.exp(last) * S + tl.dot(tl.trans(kd), U, input_precision=_PRECISION)
    tl.store(HT + state_off, S, mask=state_mask)


@triton.jit
def _recurrent_step_kernel(
    # pointers: q/k (N, Hk, Dk), v/o (N, Hv, Dv), g/beta (N, Hv), state (N, Hv, Dk, Dv)
    Q, K, V, G, BETA, S_PTR, O,
    # sizes
    Hk, Hv, Dk, Dv, scale,
    # meta-parameters
    BK: tl.constexpr,  # next power of two >= Dk
    BV: tl.constexpr,  # value columns per program
    L2NORM: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    seq_head = tl.program_id(0)
    n, h = seq_head // Hv, seq_head % Hv
    hk = h // (Hv // Hk)
    rk = tl.arange(0, BK)
    rv = tl.program_id(1) * BV + tl.arange(0, BV)
    km, vm = rk < Dk, rv < Dv
    q = tl.load(Q + (n * Hk + hk) * Dk + rk, mask=km, other=0.0).to(tl.float32)
    k = tl.load(K + (n * Hk + hk) * Dk + rk, mask=km, other=0.0).to(tl.float32)
    if L2NORM:
        q = q / tl.sqrt(tl.sum(q * q, axis=0) + 1e-6)
        k = k / tl.sqrt(tl.sum(k * k, axis=0) + 1e-6)
    q = q * scale
    v = tl.load(V + seq_head * Dv + rv, mask=vm, other=0.0).to(tl.float32)
    g = tl.load(G + seq_head).to(tl.float32)
    beta = tl.load(BETA + seq_head).to(tl.float32)
    off = (seq_head * Dk + rk[:, None]) * Dv + rv[None, :]
    mask = km[:, None] & vm[None, :]
    S = tl.load(S_PTR + off, mask=mask, other=0.0) * tl.exp(g)  # (BK, BV)
    u = beta * (v - tl.sum(S * k[:, None], axis=0))  # delta rule: the unpredicted part
    S = S + k[:, None] * u[None, :]
    tl.store(S_PTR + off, S, mask=mask)
    o = tl.sum(S * q[:, None], axis=0)
    tl.store(O + seq_head * Dv + rv, round_to(o, O.dtype.element_ty, INTERPRET), mask=vm)


@triton.jit
def _conv_update_kernel(
    # pointers: x/y (N, C), state (N, C, K-1) fp32, weight (C, K)
    X, STATE, W, Y,
    # sizes
    C,
    # meta-parameters
    KW: tl.constexpr,  # convolution width K
    BC: tl.constexpr,  # channels per program
    INTERPRET: tl.constexpr,
):
    n = tl.program_id(0)
    ch = tl.program_id(1) * BC + tl.arange(0, BC)
    cm = ch < C
    x = tl.load(X + n * C + ch, mask=cm, other=0.0).to(tl.float32)
    base = STATE + (n * C + ch) * (KW - 1)
    acc = x * tl.load(W + ch * KW + KW - 1, mask=cm, other=0.0).to(tl.float32)
    for j in tl.static_range(KW - 1):
        acc += tl.load(base + j, mask=cm, other=0.0) * tl.load(
            W + ch * KW + j, mask=cm, other=0.0).to(tl.float32)
    for j in tl.static_range(KW - 2):  # shift left: each slot reads the next, still unwritten
        tl.store(base + j, tl.load(base + j + 1, mask=cm, other=0.0), mask=cm)
    tl.store(base + KW - 2, x, mask=cm)
    y = acc / (1.0 + tl.exp(-acc))  # SiLU
    tl.store(Y + n * C + ch, round_to(y, Y.dtype.element_ty, INTERPRET), mask=cm)


def _check_qkv(q, k, v, g, beta, tokens_dim: str):
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[0] != q.shape[0]:
        raise ValueError(f"q/k must be ({tokens_dim}, Hk, Dk) and v ({tokens_dim}, Hv, Dv), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    t, hk, dk = q.shape
    hv, dv = v.shape[1:]
    if hv % hk:
        raise ValueError(f"value heads ({hv}) must be a multiple of q/k heads ({hk})")
    if g.shape != (t, hv) or beta.shape != (t, hv):
        raise ValueError(f"g and beta must be ({tokens_dim}, Hv) = {(t, hv)}, got "
                         f"{tuple(g.shape)}, {tuple(beta.shape)}")
    if dk > 256:
        raise ValueError(f"key head dim {dk} > 256 is not supported by the kernel")
    for name, x in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta)):
        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise TypeError(f"delta rule kernels take fp16/bf16/fp32, got {name} {x.dtype}")
        if x.device != q.device:
            raise ValueError(f"{name} on {x.device}, q on {q.device}")
    check_device(q)
    return t, hk, dk, hv, dv


def _block_v(dv: int) -> int:
    return max(16, min(32 if interpreting() else 64, triton.next_power_of_2(dv)))


def chunk_gated_delta_rule(q, k, v, g, beta, *, scale: float | None = None,
                           initial_state=None, cu_seqlens=None, use_qk_l2norm: bool = False):
    """Triton launcher; the contract of `chunk_gated_delta_rule_ref` (forward only)."""
    t, hk, dk, hv, dv = _check_qkv(q, k, v, g, beta, "T")
    if cu_seqlens is None:
        cu = torch.tensor([0, t], dtype=torch.int32, device=q.device)
    else:
        _seq_bounds(cu_seqlens, t)  # validates
        cu = cu_seqlens.to(device=q.device, dtype=torch.int32).contiguous()
    n = cu.shape[0] - 1
    if initial_state is not None and initial_state.shape != (n, hv, dk, dv):
        raise ValueError(f"initial_state must be (N, Hv, Dk, Dv) = {(n, hv, dk, dv)}, got "
                         f"{tuple(initial_state.shape)}")
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    o = torch.empty_like(v)
    final = torch.empty(n, hv, dk, dv, dtype=torch.float32, device=q.device)
    h0 = final if initial_state is None else initial_state.float().contiguous()
    bv = _block_v(dv)
    _chunk_kernel[(n * hv, triton.cdiv(dv, bv))](
        q, k, v, g, beta, h0, o, final, cu,
        hk, hv, dk, dv, float(dk**-0.5 if scale is None else scale),
        BT=CHUNK, BK=max(16, triton.next_power_of_2(dk)), BV=bv,
        HAS_H0=initial_state is not None, L2NORM=use_qk_l2norm, INTERPRET=interpreting(),
        num_warps=4 if dk <= 64 else 8,
    )
    return o, final


def recurrent_step(q, k, v, g, beta, state, *, scale: float | None = None,
                   use_qk_l2norm: bool = False):
    """Triton launcher; the contract of `recurrent_step_ref` (state advanced in place)."""
    n, hk, dk, hv, dv = _check_qkv(q, k, v, g, beta, "N")
    if (state.shape != (n, hv, dk, dv) or state.dtype != torch.float32
            or not state.is_contiguous()):
        raise ValueError(f"state must be a contiguous fp32 (N, Hv, Dk, Dv) = {(n, hv, dk, dv)} "
                         f"tensor, got {tuple(state.shape)} {state.dtype}")
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    o = torch.empty_like(v)
    bv = _block_v(dv)
    _recurrent_step_kernel[(n * hv, triton.cdiv(dv, bv))](
        q, k, v, g, beta, state, o,
        hk, hv, dk, dv, float(dk**-0.5 if scale is None else scale),
        BK=triton.next_power_of_2(dk), BV=bv, L2NORM=use_qk_l2norm, INTERPRET=interpreting(),
    )
    return o


def causal_conv1d_update(x, state, weight):
    """Triton launcher; the contract of `causal_conv1d_update_ref` (fp32 state)."""
    if (x.dim() != 2 or weight.dim() != 2 or weight.shape[0] != x.shape[1]
            or state.shape != (x.shape[0], x.shape[1], weight.shape[1] - 1)):
        raise ValueError(f"x must be (N, C) with state (N, C, K-1) and weight (C, K), got "
                         f"{tuple(x.shape)}, {tuple(state.shape)}, {tuple(weight.shape)}")
    if weight.shape[1] < 2:
        raise ValueError(f"convolution width must be >= 2, got {weight.shape[1]}")
    if state.dtype != torch.float32 or not state.is_contiguous():
        raise ValueError(f"state must be contiguous fp32, got {state.dtype}")
    check_device(x)
    x, weight = x.contiguous(), weight.contiguous()
    n, c = x.shape
    y = torch.empty_like(x)
    bc = min(1024, triton.next_power_of_2(c))
    _conv_update_kernel[(n, triton.cdiv(c, bc))](x, state, weight, y, c, KW=weight.shape[1],
                                                  BC=bc, INTERPRET=interpreting())
    return y


def _grouped(q, k, hv: int):
    """q/k expanded to one head per value head (for libraries without grouped values)."""
    r = hv // q.shape[1]
    return (q, k) if r == 1 else (q.repeat_interleave(r, 1), k.repeat_interleave(r, 1))


def fla_chunk(q, k, v, g, beta, *, scale=None, initial_state=None, cu_seqlens=None,
              use_qk_l2norm: bool = False):
    """flash-linear-attention's chunked gated delta rule behind our contract."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_chunk_fn

    q, k = _grouped(q, k, v.shape[1])
    cu = None if cu_seqlens is None else cu_seqlens.to(device=q.device, dtype=torch.long)
    o, final = fla_chunk_fn(q[None], k[None], v[None], g[None].float(), beta[None],
                            scale=scale, initial_state=initial_state, output_final_state=True,
                            cu_seqlens=cu, use_qk_l2norm_in_kernel=use_qk_l2norm)
    return o[0], final.float()


def fla_recurrent_step(q, k, v, g, beta, state, *, scale=None, use_qk_l2norm: bool = False):
    """flash-linear-attention's fused recurrent rule for one token per sequence."""
    from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule

    q, k = _grouped(q, k, v.shape[1])
    # (N, H, D) -> (N, 1, H, D): each sequence is a batch row of one token
    o, final = fused_recurrent_gated_delta_rule(
        q[:, None], k[:, None], v[:, None], g[:, None].float(), beta[:, None], scale=scale,
        initial_state=state, output_final_state=True, use_qk_l2norm_in_kernel=use_qk_l2norm)
    state.copy_(final)
    return o[:, 0]




def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim (flash-linear-attention's definition)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def _seq_bounds(cu_seqlens, total: int) -> list[tuple[int, int]]:
    if cu_seqlens is None:
        return [(0, total)]
    cu = [int(c) for c in cu_seqlens.tolist()]
    if cu[0] != 0 or cu[-1] != total or any(b < a for a, b in zip(cu, cu[1:])):
        raise ValueError(f"cu_seqlens {cu} must rise from 0 to the token count {total}")
    return list(zip(cu, cu[1:]))


def _prepare(q, k, v, g, beta, scale, use_qk_l2norm):
    """Check shapes; fp32 copies with q/k expanded to the value heads, q scaled."""
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[0] != q.shape[0]:
        raise ValueError(f"q/k must be (T, Hk, Dk) and v (T, Hv, Dv), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    t, hk, dk = q.shape
    hv = v.shape[1]
    if hv % hk:
        raise ValueError(f"value heads ({hv}) must be a multiple of q/k heads ({hk})")
    if g.shape != (t, hv) or beta.shape != (t, hv):
        raise ValueError(f"g and beta must be (T, Hv) = {(t, hv)}, got {tuple(g.shape)}, "
                         f"{tuple(beta.shape)}")
    q, k = q.float(), k.float()
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    q = q * (dk**-0.5 if scale is None else scale)
    if hv != hk:  # q/k head h serves value heads h*r .. h*r + r - 1
        q = q.repeat_interleave(hv // hk, dim=1)
        k = k.repeat_interleave(hv // hk, dim=1)
    return q, k, v.float(), g.float(), beta.float()


def _initial(initial_state, n: int, hv: int, dk: int, dv: int, device):
    if initial_state is None:
        return torch.zeros(n, hv, dk, dv, device=device)
    if initial_state.shape != (n, hv, dk, dv):
        raise ValueError(f"initial_state must be (N, Hv, Dk, Dv) = {(n, hv, dk, dv)}, got "
                         f"{tuple(initial_state.shape)}")
    return initial_state.float()


def chunk_gated_delta_rule_ref(q, k, v, g, beta, *, scale: float | None = None,
                               initial_state=None, cu_seqlens=None,
                               use_qk_l2norm: bool = False, chunk_size: int = CHUNK):
    """Prefill: q/k (T, Hk, Dk), v (T, Hv, Dv), g/beta (T, Hv) -> (o (T, Hv, Dv) in v's
    dtype, final states (N, Hv, Dk, Dv) fp32), by chunks (see the module docstring)."""
    out_dtype = v.dtype
    bounds = _seq_bounds(cu_seqlens, q.shape[0])
    q, k, v, g, beta = _prepare(q, k, v, g, beta, scale, use_qk_l2norm)
    hv, dk, dv = v.shape[1], q.shape[2], v.shape[2]
    states = _initial(initial_state, len(bounds), hv, dk, dv, q.device)
    outs, finals = [], []
    for n, (a, b) in enumerate(bounds):
        s = states[n]  # (Hv, Dk, Dv)
        for c in range(a, b, chunk_size):
            e = min(c + chunk_size, b)
            o, s = _chunk(q[c:e], k[c:e], v[c:e], g[c:e], beta[c:e], s)
            outs.append(o)
        finals.append(s)
    o = torch.cat(outs) if outs else v.new_zeros(0, hv, dv)
    return o.to(out_dtype), torch.stack(finals)


def _chunk(q, k, v, g, beta, s):
    """One chunk of one sequence, heads first: q/k (L, Hv, Dk), v (L, Hv, Dv), g/beta
    (L, Hv), s (Hv, Dk, Dv) -> (o (L, Hv, Dv), s at the chunk's end)."""
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # (Hv, L, D)
    G = g.t().cumsum(-1)  # (Hv, L)
    bt = beta.t()[..., None]  # (Hv, L, 1)
    n = q.shape[1]
    decay = (G[:, :, None] - G[:, None, :])  # (Hv, L, L): G_t - G_j
    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    decay = decay.masked_fill(~causal, float("-inf")).exp()  # 0 above the diagonal
    eye = torch.eye(n, device=q.device)
    lower = (bt * (k @ k.transpose(1, 2)) * decay).masked_fill(eye.bool(), 0.0)  # L
    eg = G.exp()[..., None]  # (Hv, L, 1)
    rhs = bt * v - (bt * eg * k) @ s  # (Hv, L, Dv)
    u = torch.linalg.solve_triangular(eye + lower, rhs, upper=False, unitriangular=True)
    o = (eg * q) @ s + ((q @ k.transpose(1, 2)) * decay) @ u
    last = G[:, -1:]  # (Hv, 1)
    s = last.exp()[..., None] * s + ((last - G).exp()[..., None] * k).transpose(1, 2) @ u
    return o.transpose(0, 1), s


def recurrent_gated_delta_rule_ref(q, k, v, g, beta, *, scale: float | None = None,
                                   initial_state=None, cu_seqlens=None,
                                   use_qk_l2norm: bool = False):
    """The recurrence token by token (decode, and the oracle for the chunked form); same
    arguments and results as `chunk_gated_delta_rule_ref`."""
    out_dtype = v.dtype
    bounds = _seq_bounds(cu_seqlens, q.shape[0])
    q, k, v, g, beta = _prepare(q, k, v, g, beta, scale, use_qk_l2norm)
    hv, dk, dv = v.shape[1], q.shape[2], v.shape[2]
    states = _initial(initial_state, len(bounds), hv, dk, dv, q.device)
    outs, finals = [], []
    for n, (a, b) in enumerate(bounds):
        s = states[n]
        for t in range(a, b):
            s = s * g[t].exp()[:, None, None]
            u = beta[t][:, None] * (v[t] - (s * k[t][:, :, None]).sum(1))  # (Hv, Dv)
            s = s + k[t][:, :, None] * u[:, None, :]
            outs.append((s * q[t][:, :, None]).sum(1))
        finals.append(s)
    o = torch.stack(outs) if outs else v.new_zeros(0, hv, dv)
    return o.to(out_dtype), torch.stack(finals)


def causal_conv1d_ref(x, weight, *, initial_state=None, cu_seqlens=None):
    """Depthwise causal convolution + SiLU over packed sequences: x (T, C), weight (C, K),
    initial_state (N, C, K-1) (the inputs before each sequence; None: zeros) ->
    (y (T, C) in x's dtype, final states (N, C, K-1) fp32: each sequence's last K-1 inputs)."""
    if x.dim() != 2 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"x must be (T, C) and weight (C, K), got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}")
    c, kw = weight.shape
    bounds = _seq_bounds(cu_seqlens, x.shape[0])
    if initial_state is not None and initial_state.shape != (len(bounds), c, kw - 1):
        raise ValueError(f"initial_state must be (N, C, K-1) = {(len(bounds), c, kw - 1)}, got "
                         f"{tuple(initial_state.shape)}")
    ys, finals = [], []
    for n, (a, b) in enumerate(bounds):
        prev = (x.new_zeros(c, kw - 1) if initial_state is None
                else initial_state[n].to(x.dtype))
        seq = torch.cat([prev, x[a:b].t()], dim=1).to(weight.dtype)  # (C, K-1 + L)
        if b > a:  # an empty sequence has no outputs and keeps its state
            y = F.conv1d(seq[None], weight[:, None, :], groups=c)[0]  # (C, L)
            ys.append(F.silu(y).t().to(x.dtype))
        finals.append(seq[:, seq.shape[1] - (kw - 1):].float())
    return (torch.cat(ys) if ys else x[:0]), torch.stack(finals)


def causal_conv1d_update_ref(x, state, weight):
    """One new token per sequence: x (N, C), state (N, C, K-1) updated in place (shifted
    left, x appended) -> y (N, C) = silu(conv over the last K inputs), in x's dtype."""
    if x.dim() != 2 or state.shape != (x.shape[0], x.shape[1], weight.shape[1] - 1):
        raise ValueError(f"x must be (N, C) with state (N, C, K-1), got {tuple(x.shape)}, "
                         f"{tuple(state.shape)} for weight {tuple(weight.shape)}")
    window = torch.cat([state.to(weight.dtype), x[:, :, None].to(weight.dtype)], dim=2)
    y = F.silu((window * weight).sum(-1))
    state.copy_(window[:, :, 1:])
    return y.to(x.dtype)


def recurrent_step_ref(q, k, v, g, beta, state, *, scale: float | None = None,
                       use_qk_l2norm: bool = False):
    """Decode: one token per sequence, q/k (N, Hk, Dk), v (N, Hv, Dv), g/beta (N, Hv);
    `state` (N, Hv, Dk, Dv) fp32 advanced in place -> o (N, Hv, Dv) in v's dtype.

    The step of `recurrent_gated_delta_rule_ref` batched over the N sequences, with no
    host reads and fixed shapes: it runs inside compiled and CUDA-graph decode steps."""
    out_dtype = v.dtype
    q, k, v, g, beta = _prepare(q, k, v, g, beta, scale, use_qk_l2norm)  # (N, Hv, D) fp32
    n, hv, dk, dv = q.shape[0], v.shape[1], q.shape[2], v.shape[2]
    if state.shape != (n, hv, dk, dv):
        raise ValueError(f"state must be (N, Hv, Dk, Dv) = {(n, hv, dk, dv)}, got "
                         f"{tuple(state.shape)}")
    s = state.float() * g.exp()[:, :, None, None]
    u = beta[:, :, None] * (v - (s * k[:, :, :, None]).sum(2))  # (N, Hv, Dv)
    s = s + k[:, :, :, None] * u[:, :, None, :]
    state.copy_(s)
    return (s * q[:, :, :, None]).sum(2).to(out_dtype)
