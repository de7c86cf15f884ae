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

Here: the plain-PyTorch references (differentiable, used by the model and the trainer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 64


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
        y = F.conv1d(seq[None], weight[:, None, :], groups=c)[0]  # (C, L)
        ys.append(F.silu(y).t().to(x.dtype))
        finals.append(seq[:, seq.shape[1] - (kw - 1):].float())
    return torch.cat(ys), torch.stack(finals)


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
    `state` (N, Hv, Dk, Dv) fp32 advanced in place -> o (N, Hv, Dv) in v's dtype."""
    n = q.shape[0]
    cu = torch.arange(n + 1, device=q.device)
    o, final = recurrent_gated_delta_rule_ref(q, k, v, g, beta, scale=scale,
                                              initial_state=state, cu_seqlens=cu,
                                              use_qk_l2norm=use_qk_l2norm)
    state.copy_(final)
    return o
