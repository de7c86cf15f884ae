"""Split-K (flash-decoding) attention for a few query rows over a long KV cache.

Why: in decode each sequence has one new token, so the plain kernel (kernels/attention.py)
runs one program per (sequence, head) - 4 programs for Qwen3-VL-30B's 4 kv heads on a
132-SM H100/H200, each streaming every cached key. Here the KV length is also split across
programs, so the grid is (splits, heads, batch) and every SM streams a slice of the cache.

Two layouts share one kernel:
- cache: q (B, Hq, D), k/v (B, Hkv, S, D) (head-major, like vlm's KV cache; any strides with a
  dense head dim), `cache_seqlens` (B,) int32 valid keys per sequence. The Hq // Hkv query
  heads of one kv head are the query ROWS of one program, so each key is loaded once per kv
  head (GQA without expanding K/V).
- varlen: the packed layout of `varlen_attention` (cu_seqlens, optional bottom-right causal
  mask) with at most DECODE_MAX_ROWS query rows per sequence; `kernels.varlen_attention`
  routes such calls here when more than one split pays off.

Algorithm. Pass 1, one program per (split, head, sequence): keys [split*chunk, (split+1)*chunk)
in BLOCK_N steps with the online softmax of FlashAttention (base-2 exponentials):
    s = q k^T * scale * log2(e);  m' = max(m, rowmax(s));  p = 2^(s - m')
    l = l * 2^(m - m') + rowsum(p);  acc = acc * 2^(m - m') + p v
and writes its unnormalised (m, l, acc) in fp32 to a workspace. Pass 2, one program per
(query row, head, sequence), combines the splits:
    M = max_s m_s;  w_s = 2^(m_s - M);  out = sum_s w_s acc_s / sum_s w_s l_s
Splits past a sequence's length see no key (m = -1e30, l = 0) and weigh nothing; a sequence
with no key at all outputs zeros.

Splits come from the longest possible KV length (host-known: the cache capacity or the
caller's max_seqlen_k, never read from the device, so a CUDA graph per capacity bucket stays
valid) and the SM count: about two programs per SM, at least MIN_KEYS_PER_SPLIT keys each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kernels._triton import check_device, interpreting, round_to, tl, triton

DECODE_MAX_ROWS = 16  # query rows per (sequence, head) that one split program holds
MIN_KEYS_PER_SPLIT = 128  # fewer keys per program and the combine pass costs more than it saves
MAX_SPLITS = 128
PROGRAMS_PER_SM = 2  # two resident programs per SM hide each other's memory latency


@triton.jit
def _split_kv_kernel(
    # pointers: inputs, then the fp32 workspace (m, l: (B*HEADS*splits, BLOCK_M);
    # acc: (B*HEADS*splits, BLOCK_M, BLOCK_D)), then the length tables
    Q, K, V, WS_M, WS_L, WS_ACC, CU_Q, CU_K, SEQLENS_K,
    # sizes
    n_rows,  # cache layout: query rows per (sequence, head); varlen reads CU_Q instead
    n_splits, chunk,  # splits per (sequence, head); keys per split (a multiple of BLOCK_N)
    GROUP,  # program heads per kv head
    qk_scale,  # softmax_scale * log2(e)
    # strides (elements; the head dim is contiguous)
    stride_qb, stride_qt, stride_qh, stride_kb, stride_kt, stride_kh,
    stride_vb, stride_vt, stride_vh,
    # meta-parameters
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,  # next power of two >= HEAD_DIM; masked columns are never loaded
    VARLEN: tl.constexpr,  # lengths from CU_Q/CU_K (packed) instead of n_rows/SEQLENS_K
    CAUSAL: tl.constexpr,  # bottom-right aligned (varlen only; one decode row sees all keys)
    INTERPRET: tl.constexpr,  # CPU interpreter numerics: fp32 dots, bf16 rounded by hand
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 inputs (no silent tf32), else None
):
    split = tl.program_id(0)
    head = tl.program_id(1)
    seq = tl.program_id(2)
    if VARLEN:
        q_start = tl.load(CU_Q + seq)
        len_q = tl.load(CU_Q + seq + 1) - q_start
        k_start = tl.load(CU_K + seq)
        len_k = tl.load(CU_K + seq + 1) - k_start
    else:
        q_start = 0
        len_q = n_rows
        k_start = 0
        len_k = tl.load(SEQLENS_K + seq)
    kv_head = head // GROUP
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    m_valid = offs_m < len_q
    d_valid = offs_d < HEAD_DIM
    q_ptr = Q + seq.to(tl.int64) * stride_qb + (q_start + offs_m)[:, None] * stride_qt
    q = tl.load(q_ptr + head * stride_qh + offs_d[None, :],
                mask=m_valid[:, None] & d_valid[None, :], other=0.0)  # (BLOCK_M, BLOCK_D)
    k_base = K + seq.to(tl.int64) * stride_kb + k_start * stride_kt + kv_head * stride_kh
    v_base = V + seq.to(tl.int64) * stride_vb + k_start * stride_vt + kv_head * stride_vh
    diag = len_k - len_q

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)  # finite: 2^(m - m') stays defined
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    lo = split * chunk
    hi = tl.minimum(lo + chunk, len_k)  # <= lo for splits past this sequence: no iteration
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        col_valid = cols < hi
        kt = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None],
                     mask=col_valid[None, :] & d_valid[:, None], other=0.0)  # (BLOCK_D, BLOCK_N)
        if INTERPRET:
            s = tl.dot(q.to(tl.float32), kt.to(tl.float32))
        else:
            s = tl.dot(q, kt, input_precision=DOT_PRECISION)
        keep = col_valid[None, :]
        if CAUSAL:
            keep = keep & (cols[None, :] <= offs_m[:, None] + diag)
        s = tl.where(keep, s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * stride_vt + offs_d[None, :],
                    mask=col_valid[:, None] & d_valid[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
        p = round_to(p, v.dtype, INTERPRET)  # as FlashAttention: p in the value dtype
        if INTERPRET:
            acc = acc * alpha[:, None] + tl.dot(p.to(tl.float32), v.to(tl.float32))
        else:
            acc = tl.dot(p, v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new

    part = (seq * tl.num_programs(1) + head) * n_splits + split  # workspace row
    tl.store(WS_M + part * BLOCK_M + offs_m, m_i)
    tl.store(WS_L + part * BLOCK_M + offs_m, l_i)
    tl.store(WS_ACC + (part * BLOCK_M + offs_m)[:, None] * BLOCK_D + offs_d[None, :], acc)


@triton.jit
def _combine_kernel(
    # pointers: workspace from _split_kv_kernel, the output, the length tables
    WS_M, WS_L, WS_ACC, O, CU_Q,
    # sizes
    n_rows, n_splits,
    # strides of O (elements; the head dim is contiguous)
    stride_ob, stride_ot, stride_oh,
    # meta-parameters
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    SPLITS_PAD: tl.constexpr,  # next power of two >= n_splits
    VARLEN: tl.constexpr, INTERPRET: tl.constexpr,
):
    row = tl.program_id(0)
    head = tl.program_id(1)
    seq = tl.program_id(2)
    if VARLEN:
        q_start = tl.load(CU_Q + seq)
        len_q = tl.load(CU_Q + seq + 1) - q_start
    else:
        q_start = 0
        len_q = n_rows
    if row >= len_q:
        return
    offs_s = tl.arange(0, SPLITS_PAD)
    offs_d = tl.arange(0, BLOCK_D)
    s_valid = offs_s < n_splits
    part = (seq * tl.num_programs(1) + head) * n_splits + offs_s  # (SPLITS_PAD,)
    m = tl.load(WS_M + part * BLOCK_M + row, mask=s_valid, other=-1.0e30)
    l = tl.load(WS_L + part * BLOCK_M + row, mask=s_valid, other=0.0)
    acc = tl.load(WS_ACC + (part * BLOCK_M + row)[:, None] * BLOCK_D + offs_d[None, :],
                  mask=s_valid[:, None], other=0.0)  # (SPLITS_PAD, BLOCK_D)
    w = tl.math.exp2(m - tl.max(m, 0))
    denom = tl.sum(w * l, 0)
    out = tl.sum(acc * w[:, None], 0) / tl.where(denom == 0.0, 1.0, denom)  # no key -> 0
    o_ptr = O + seq.to(tl.int64) * stride_ob + (q_start + row) * stride_ot + head * stride_oh
    tl.store(o_ptr + offs_d, round_to(out, O.dtype.element_ty, INTERPRET),
             mask=offs_d < HEAD_DIM)


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device; 4 elsewhere (the interpreter, where the
    number only needs to make the tests take several splits)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def choose_splits(programs: int, max_keys: int, sms: int, block_n: int) -> tuple[int, int]:
    """(splits, keys per split) for `programs` (sequence, head) pairs over at most `max_keys`
    keys: about PROGRAMS_PER_SM programs per SM, at least MIN_KEYS_PER_SPLIT keys each, the
    chunk a multiple of block_n. 4 kv heads x 16k keys on 132 SMs -> (66, 256)."""
    if max_keys <= 0:
        return 1, block_n
    want = triton.cdiv(PROGRAMS_PER_SM * sms, max(programs, 1))
    most = max(1, min(MAX_SPLITS, max_keys // MIN_KEYS_PER_SPLIT))
    splits = max(1, min(want, most))
    chunk = triton.cdiv(triton.cdiv(max_keys, splits), block_n) * block_n
    return triton.cdiv(max_keys, chunk), chunk


def _launch_config(d: int, dtype: torch.dtype, interpret: bool) -> dict:
    if interpret:
        return {"BLOCK_N": 16, "num_warps": 1, "num_stages": 1}
    if dtype == torch.float32:
        return {"BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
    # untuned (no GPU was available): 64 keys x 128 dims of K and V per step, 3 in flight
    return {"BLOCK_N": 64, "num_warps": 4, "num_stages": 3}


def _check_qkv(q, k, v, q_dims: int, kv_dims: int) -> None:
    if q.dim() != q_dims or k.dim() != kv_dims or v.dim() != kv_dims:
        raise ValueError(f"expected q with {q_dims} dims and k/v with {kv_dims}; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if v.shape != k.shape or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"head dims/shapes differ: q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (
        torch.float16, torch.bfloat16, torch.float32
    ):
        raise TypeError(f"q/k/v must share fp16/bf16/fp32; got {q.dtype}, {k.dtype}, {v.dtype}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous head dim (stride {t.stride()})")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, q on {q.device}")
    if q.shape[-1] > 256:
        raise ValueError(f"head dim {q.shape[-1]} > 256 is not supported by the Triton kernel")


def _run(q, k, v, out, lengths, *, batch, heads, rows, group, max_keys, scale, varlen, causal,
         strides_q, strides_k, strides_v, strides_o, num_splits):
    """Both passes for either layout; `lengths` is (cu_q, cu_k) or (None, cache_seqlens)."""
    check_device(q)
    d = q.shape[-1]
    interpret = interpreting()
    cfg = _launch_config(d, q.dtype, interpret)
    block_n = cfg["BLOCK_N"]
    if num_splits is None:
        splits, chunk = choose_splits(batch * heads, max_keys, sm_count(q.device), block_n)
    else:
        chunk = triton.cdiv(triton.cdiv(max(max_keys, 1), num_splits), block_n) * block_n
        splits = triton.cdiv(max(max_keys, 1), chunk)
    block_m = max(16, triton.next_power_of_2(rows))  # tl.dot needs 16 rows
    block_d = max(16, triton.next_power_of_2(d))
    parts = batch * heads * splits
    ws_m = torch.empty(parts, block_m, dtype=torch.float32, device=q.device)
    ws_l = torch.empty_like(ws_m)
    ws_acc = torch.empty(parts, block_m, block_d, dtype=torch.float32, device=q.device)
    cu_q, seqlens = lengths
    cu_q = cu_q if cu_q is not None else seqlens  # unread placeholder in the cache layout
    cu_k = seqlens
    _split_kv_kernel[(splits, heads, batch)](
        q, k, v, ws_m, ws_l, ws_acc, cu_q, cu_k, seqlens,
        rows, splits, chunk, group, scale * math.log2(math.e),
        *strides_q, *strides_k, *strides_v,
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        VARLEN=varlen, CAUSAL=causal, INTERPRET=interpret,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else None,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    _combine_kernel[(rows, heads, batch)](
        ws_m, ws_l, ws_acc, out, cu_q,
        rows, splits, *strides_o,
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_D=block_d,
        SPLITS_PAD=max(2, triton.next_power_of_2(splits)), VARLEN=varlen, INTERPRET=interpret,
        num_warps=1 if interpret else 4,
    )
    return out


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cache_seqlens: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Triton launcher, cache layout; same contract as `decode_attention_ref`.

    `num_splits` overrides the choice from the cache capacity and SM count (tests, bench).
    """
    _check_qkv(q, k_cache, v_cache, 3, 4)
    b, hq, d = q.shape
    bk, hkv, capacity, _ = k_cache.shape
    if bk != b:
        raise ValueError(f"q has batch {b}, the cache {bk}")
    if hq % hkv:
        raise ValueError(f"query heads {hq} are not a multiple of kv heads {hkv}")
    g = hq // hkv
    if g > DECODE_MAX_ROWS:
        raise ValueError(f"{g} query heads per kv head > {DECODE_MAX_ROWS} rows per program")
    if cache_seqlens.dtype != torch.int32 or cache_seqlens.shape != (b,) or (
        cache_seqlens.device != q.device
    ):
        raise ValueError(f"cache_seqlens must be ({b},) int32 on {q.device}; got "
                         f"{cache_seqlens.dtype} {tuple(cache_seqlens.shape)} "
                         f"on {cache_seqlens.device}")
    out = torch.empty_like(q)
    if b == 0:
        return out
    scale = softmax_scale if softmax_scale is not None else d**-0.5
    # query head kv*g + r is row r of program head kv: row stride = head stride, head stride
    # = g head strides
    return _run(
        q, k_cache, v_cache, out, (None, cache_seqlens), batch=b, heads=hkv, rows=g, group=1,
        max_keys=capacity, scale=scale, varlen=False, causal=False,
        strides_q=(q.stride(0), q.stride(1), g * q.stride(1)),
        strides_k=(k_cache.stride(0), k_cache.stride(2), k_cache.stride(1)),
        strides_v=(v_cache.stride(0), v_cache.stride(2), v_cache.stride(1)),
        strides_o=(out.stride(0), out.stride(1), g * out.stride(1)), num_splits=num_splits,
    )


def split_kv_varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    *,
    causal: bool = False,
    softmax_scale: float | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Triton launcher, packed layout: `varlen_attention`'s contract for calls with at most
    DECODE_MAX_ROWS query rows per sequence."""
    _check_qkv(q, k, v, 3, 3)
    hq, hkv = q.shape[1], k.shape[1]
    if hq % hkv:
        raise ValueError(f"query heads {hq} are not a multiple of kv heads {hkv}")
    if max_seqlen_q > DECODE_MAX_ROWS:
        raise ValueError(f"max_seqlen_q {max_seqlen_q} > {DECODE_MAX_ROWS}: use varlen_attention")
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if cu.dtype != torch.int32 or cu.dim() != 1 or cu.device != q.device:
            raise ValueError(f"{name} must be 1-D int32 on {q.device}; got {cu.dtype} {cu.shape}")
    if cu_seqlens_q.shape != cu_seqlens_k.shape:
        raise ValueError(f"cu_seqlens_q {cu_seqlens_q.shape} != cu_seqlens_k {cu_seqlens_k.shape}")
    out = torch.empty_like(q)
    batch = cu_seqlens_q.shape[0] - 1
    if batch <= 0 or max_seqlen_q <= 0 or q.shape[0] == 0:
        return out
    d = q.shape[2]
    scale = softmax_scale if softmax_scale is not None else d**-0.5
    return _run(
        q, k, v, out, (cu_seqlens_q, cu_seqlens_k), batch=batch, heads=hq,
        rows=int(max_seqlen_q), group=hq // hkv, max_keys=int(max_seqlen_k), scale=scale,
        varlen=True, causal=causal,
        strides_q=(0, q.stride(0), q.stride(1)), strides_k=(0, k.stride(0), k.stride(1)),
        strides_v=(0, v.stride(0), v.stride(1)), strides_o=(0, out.stride(0), out.stride(1)),
        num_splits=num_splits,
    )


def splits_for(max_seqlen_q: int, batch: int, heads: int, max_seqlen_k: int,
               device: torch.device) -> int:
    """How many splits a varlen call would get (1: the plain kernel is as good)."""
    if max_seqlen_q > DECODE_MAX_ROWS:
        return 1
    block_n = _launch_config(128, torch.bfloat16, interpreting())["BLOCK_N"]
    return choose_splits(batch * heads, max_seqlen_k, sm_count(device), block_n)[0]


def decode_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cache_seqlens: torch.Tensor,
    *,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Plain PyTorch: q (B, Hq, D), k/v (B, Hkv, S, D), cache_seqlens (B,) int32 -> (B, Hq, D);
    query b attends to keys [0, cache_seqlens[b]). Masked SDPA over the whole capacity, no
    host read (slice the cache to the longest length first when the host knows it)."""
    b, hq, d = q.shape
    scale = softmax_scale if softmax_scale is not None else d**-0.5
    valid = torch.arange(k_cache.shape[2], device=q.device)[None, :] < cache_seqlens[:, None]
    empty = ~valid.any(1)  # (B,) sequences with no key output zeros (SDPA would give NaN)
    mask = q.new_zeros(valid.shape).masked_fill_(~(valid | empty[:, None]), -math.inf)
    o = F.scaled_dot_product_attention(q[:, :, None], k_cache, v_cache,
                                       attn_mask=mask[:, None, None], scale=scale,
                                       enable_gqa=hq != k_cache.shape[1])  # (B, Hq, 1, D)
    return o[:, :, 0].masked_fill(empty[:, None, None], 0.0)
