"""Variable-length (packed) attention forward: FlashAttention-2 with online softmax.

Shapes: q (total_q, Hq, D), k/v (total_k, Hkv, D); sequences are packed back to back and
delimited by int32 `cu_seqlens_*` (leading 0, length batch + 1). Hq is a multiple of Hkv
(GQA: query head h reads kv head h // (Hq // Hkv)). With `causal=True` the mask is aligned
bottom-right: query row i of a sequence sees keys j <= i + (seqlen_k - seqlen_q), so with
seqlen_k > seqlen_q the queries are the LAST seqlen_q positions (prefill on a cached
prefix). Rows that see no key (causal, seqlen_q > seqlen_k) output zeros, as flash-attn does.

Algorithm: one program per (BLOCK_M query rows, sequence, query head). It walks the keys in
BLOCK_N blocks (stopping at the causal diagonal) in two phases - interior blocks every row
sees, with no masking, then the ragged tail and the blocks crossing the diagonal, masked -
keeping the running row max m, the running denominator l and the unnormalised output acc
in fp32:
    s = q k^T * scale * log2(e);  m' = max(m, rowmax(s));  p = 2^(s - m')
    l = l * 2^(m - m') + rowsum(p);  acc = acc * 2^(m - m') + p v;  out = acc / l
so the (seqlen_q, seqlen_k) score matrix never exists in memory.

Head dims that are not powers of two (72 and 80 in the Qwen ViTs) are split instead of padded:
the first BLOCK_D = 64 columns go through one dot and the remaining 8 or 16 through a second
16-wide dot, so a 72-wide head costs 80 columns of tensor-core work (1.11x) instead of the
128 (1.78x) that masking up to the next power of two costs; 80 costs exactly 80 (vs 1.6x).
Memory traffic is the same either way (masked columns are never loaded).
`python -m kernels.bench` times both layouts (`split_head_dim=False` is the masked one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kernels._triton import check_device, interpreting, round_to, tl, triton


@triton.jit
def _attend_blocks(
    # running state: unnormalised outputs for both head-dim chunks, row max, row denominator
    acc, acc2, m_i, l_i,
    # this program's queries (q2: second head-dim chunk, ignored without HAS_D2)
    q, q2,
    # key/value rows of this sequence and kv head
    k_base, v_base, stride_kt, stride_vt,
    # offsets and masks built once by the caller
    offs_m, offs_n, offs_d, offs_d2, d_valid, d2_valid,
    # key range [lo, hi) walked in BLOCK_N steps; diag = len_k - len_q
    lo, hi, len_k, diag, qk_scale,
    MASKED: tl.constexpr,  # boundary/diagonal blocks: mask keys past len_k and above diag
    CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr, HAS_D2: tl.constexpr,
    INTERPRET: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        if MASKED:
            kt_mask = (cols[None, :] < len_k) & d_valid[:, None]
            v_mask = (cols[:, None] < len_k) & d_valid[None, :]
        else:  # interior blocks: every key exists and is visible to every row
            kt_mask = d_valid[:, None]
            v_mask = d_valid[None, :]
        kt = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None], mask=kt_mask,
                     other=0.0)  # (BLOCK_D, BLOCK_N)
        if INTERPRET:
            s = tl.dot(q.to(tl.float32), kt.to(tl.float32))
        else:
            s = tl.dot(q, kt, input_precision=DOT_PRECISION)
        if HAS_D2:
            if MASKED:
                kt2_mask = (cols[None, :] < len_k) & d2_valid[:, None]
            else:
                kt2_mask = d2_valid[:, None]
            kt2 = tl.load(k_base + cols[None, :] * stride_kt + offs_d2[:, None], mask=kt2_mask,
                          other=0.0)
            if INTERPRET:
                s += tl.dot(q2.to(tl.float32), kt2.to(tl.float32))
            else:
                s += tl.dot(q2, kt2, input_precision=DOT_PRECISION)
        s = s * qk_scale
        if MASKED:
            keep = cols[None, :] < len_k
            if CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None] + diag)
            s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * stride_vt + offs_d[None, :], mask=v_mask,
                    other=0.0)  # (BLOCK_N, BLOCK_D)
        # p is rounded to the value dtype before the second dot, as in FlashAttention
        p = round_to(p, v.dtype, INTERPRET)
        if INTERPRET:
            acc = acc * alpha[:, None] + tl.dot(p.to(tl.float32), v.to(tl.float32))
        else:
            acc = tl.dot(p, v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        if HAS_D2:
            if MASKED:
                v2_mask = (cols[:, None] < len_k) & d2_valid[None, :]
            else:
                v2_mask = d2_valid[None, :]
            v2 = tl.load(v_base + cols[:, None] * stride_vt + offs_d2[None, :], mask=v2_mask,
                         other=0.0)
            if INTERPRET:
                acc2 = acc2 * alpha[:, None] + tl.dot(p.to(tl.float32), v2.to(tl.float32))
            else:
                acc2 = tl.dot(p, v2, acc2 * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, acc2, m_i, l_i


@triton.jit
def _varlen_attention_kernel(
    # pointers
    Q, K, V, O, CU_Q, CU_K,
    # sizes
    GROUP,  # Hq // Hkv
    qk_scale,  # softmax_scale * log2(e): the exponentials are exp2
    # strides (elements; the head dim is contiguous)
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    # meta-parameters
    HEAD_DIM: tl.constexpr,  # D; constexpr so full-width chunks need no runtime mask
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # keys per inner step
    BLOCK_D: tl.constexpr,  # first head-dim chunk (power of two; masked when D < BLOCK_D)
    BLOCK_D2: tl.constexpr,  # second chunk (power of two >= 16) covering D - BLOCK_D
    HAS_D2: tl.constexpr,  # D > BLOCK_D: the second chunk exists
    CAUSAL: tl.constexpr,
    INTERPRET: tl.constexpr,  # CPU interpreter numerics: fp32 dots, bf16 rounded by hand
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 inputs (no silent tf32), else None
):
    pid_m = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2)
    q_start = tl.load(CU_Q + seq)
    len_q = tl.load(CU_Q + seq + 1) - q_start
    k_start = tl.load(CU_K + seq)
    len_k = tl.load(CU_K + seq + 1) - k_start
    if pid_m * BLOCK_M >= len_q:
        return
    kv_head = head // GROUP

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # row within the sequence
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_d2 = BLOCK_D + tl.arange(0, BLOCK_D2)
    m_valid = offs_m < len_q
    d_valid = offs_d < HEAD_DIM
    d2_valid = offs_d2 < HEAD_DIM
    q_rows = Q + (q_start + offs_m)[:, None] * stride_qt + head * stride_qh
    q = tl.load(q_rows + offs_d[None, :], mask=m_valid[:, None] & d_valid[None, :], other=0.0)
    if HAS_D2:
        q2 = tl.load(q_rows + offs_d2[None, :], mask=m_valid[:, None] & d2_valid[None, :],
                     other=0.0)
    else:
        q2 = tl.zeros([BLOCK_M, BLOCK_D2], dtype=Q.dtype.element_ty)  # never read
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_M, BLOCK_D2], dtype=tl.float32)
    # a finite start keeps 2^(m - m') defined for rows that have seen only masked keys
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)

    # keys [0, interior) are visible to every row of this block: no masks there. The rest up
    # to `hi` (the ragged tail, and for causal the blocks crossing the diagonal) are masked.
    diag = len_k - len_q  # bottom-right causal alignment
    interior = len_k // BLOCK_N * BLOCK_N
    hi = len_k
    if CAUSAL:
        first_row_sees = tl.maximum(pid_m * BLOCK_M + diag + 1, 0)  # keys [0, this) for row 0
        interior = tl.minimum(interior, first_row_sees // BLOCK_N * BLOCK_N)
        hi = tl.maximum(tl.minimum(len_k, (pid_m + 1) * BLOCK_M + diag), 0)
    k_base = K + k_start * stride_kt + kv_head * stride_kh
    v_base = V + k_start * stride_vt + kv_head * stride_vh
    acc, acc2, m_i, l_i = _attend_blocks(
        acc, acc2, m_i, l_i, q, q2, k_base, v_base, stride_kt, stride_vt,
        offs_m, offs_n, offs_d, offs_d2, d_valid, d2_valid,
        0, interior, len_k, diag, qk_scale,
        False, CAUSAL, BLOCK_N, HAS_D2, INTERPRET, DOT_PRECISION,
    )
    acc, acc2, m_i, l_i = _attend_blocks(
        acc, acc2, m_i, l_i, q, q2, k_base, v_base, stride_kt, stride_vt,
        offs_m, offs_n, offs_d, offs_d2, d_valid, d2_valid,
        interior, hi, len_k, diag, qk_scale,
        True, CAUSAL, BLOCK_N, HAS_D2, INTERPRET, DOT_PRECISION,
    )

    inv_l = 1.0 / tl.where(l_i == 0.0, 1.0, l_i)  # rows with no visible key output 0
    o_rows = O + (q_start + offs_m)[:, None] * stride_ot + head * stride_oh
    out = round_to(acc * inv_l[:, None], O.dtype.element_ty, INTERPRET)
    tl.store(o_rows + offs_d[None, :], out, mask=m_valid[:, None] & d_valid[None, :])
    if HAS_D2:
        out2 = round_to(acc2 * inv_l[:, None], O.dtype.element_ty, INTERPRET)
        tl.store(o_rows + offs_d2[None, :], out2, mask=m_valid[:, None] & d2_valid[None, :])


def head_dim_blocks(d: int, split: bool = True) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_D2): 72 -> (64, 16), 80 -> (64, 16), 128 -> (128, 0); masked: (128, 0).

    BLOCK_D2 = 0 means one chunk (the launcher still passes 16 so shapes stay valid)."""
    full = max(16, triton.next_power_of_2(d))
    if not split or full == d or d <= 16:
        return full, 0
    first = full // 2  # largest power of two below d
    return first, max(16, triton.next_power_of_2(d - first))


def _launch_config(d: int, dtype: torch.dtype, interpret: bool) -> dict:
    """Block sizes: tiny under the interpreter (it runs programs one by one in numpy)."""
    if interpret:
        return {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 1, "num_stages": 1}
    if dtype == torch.float32:
        return {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
    # untuned (no GPU was available); two stages keep shared memory under ~100 KB so the
    # same config also fits consumer GPUs
    if d <= 64:
        return {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3}
    return {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 2}


def varlen_attention(
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
    split_head_dim: bool = True,
) -> torch.Tensor:
    """Triton launcher; same contract as `varlen_attention_ref`.

    `split_head_dim=False` pads the head dim to the next power of two with a mask instead of
    splitting it (kept for the benchmark that shows the cost).
    """
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError(f"q/k/v must be (tokens, heads, dim); got {q.shape}, {k.shape}, {v.shape}")
    total_k, hkv, d = k.shape
    hq = q.shape[1]
    if q.shape[2] != d or v.shape != k.shape:
        raise ValueError(f"head dims/shapes differ: q {q.shape}, k {k.shape}, v {v.shape}")
    if hq % hkv:
        raise ValueError(f"query heads {hq} are not a multiple of kv heads {hkv}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (
        torch.float16, torch.bfloat16, torch.float32
    ):
        raise TypeError(f"q/k/v must share fp16/bf16/fp32; got {q.dtype}, {k.dtype}, {v.dtype}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(2) != 1:
            raise ValueError(f"{name} must have a contiguous head dim (stride {t.stride()})")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, q on {q.device}")
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if cu.dtype != torch.int32 or cu.dim() != 1 or cu.device != q.device:
            raise ValueError(f"{name} must be 1-D int32 on {q.device}; got {cu.dtype} {cu.shape}")
    if cu_seqlens_q.shape != cu_seqlens_k.shape:
        raise ValueError(f"cu_seqlens_q {cu_seqlens_q.shape} != cu_seqlens_k {cu_seqlens_k.shape}")
    if d > 256:
        raise ValueError(f"head dim {d} > 256 is not supported by the Triton kernel")
    check_device(q)
    batch = cu_seqlens_q.shape[0] - 1
    out = torch.empty_like(q)
    if batch <= 0 or max_seqlen_q <= 0 or q.shape[0] == 0:
        return out
    scale = softmax_scale if softmax_scale is not None else d**-0.5
    interpret = interpreting()
    cfg = _launch_config(d, q.dtype, interpret)
    block_d, block_d2 = head_dim_blocks(d, split_head_dim)
    grid = (triton.cdiv(max_seqlen_q, cfg["BLOCK_M"]), batch, hq)
    _varlen_attention_kernel[grid](
        q, k, v, out, cu_seqlens_q, cu_seqlens_k,
        hq // hkv, scale * math.log2(math.e),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1),
        v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_D=block_d,
        BLOCK_D2=max(block_d2, 16), HAS_D2=block_d2 > 0, CAUSAL=causal, INTERPRET=interpret,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else None,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    return out


# the last additive mask built under inference mode: every decoder layer of one forward asks
# for the same one (one entry, so at most one mask is kept alive)
_mask_memo: dict[tuple, torch.Tensor] = {}


def _bottom_right_causal_mask(lq: int, lk: int, device, dtype) -> torch.Tensor:
    """(Lq, Lk) additive mask, 0 where query row r may see key c <= r + (Lk - Lq), else -inf.

    Additive in the query dtype rather than bool: CPU SDPA would otherwise convert a bool
    mask on every call (measured 242 -> 212 ms per call for 2057 queries over 4640 keys).
    """
    key = (lq, lk, str(device), dtype)
    memo = torch.is_inference_mode_enabled()  # an inference tensor cannot enter autograd
    if memo and key in _mask_memo:
        return _mask_memo[key]
    rows = torch.arange(lq, device=device)[:, None] + (lk - lq)
    cols = torch.arange(lk, device=device)[None, :]
    mask = torch.zeros(lq, lk, dtype=dtype, device=device).masked_fill_(cols > rows, -math.inf)
    if memo:
        _mask_memo.clear()
        _mask_memo[key] = mask
    return mask


def _segment_rows(cu: torch.Tensor, max_len: int, total: int):
    """cu (B+1,) -> (index (B, max_len) of each segment's rows in the packed tensor, `total`
    (one past the end) standing for padding; valid (B, max_len) bool). Device ops only."""
    r = torch.arange(max_len, device=cu.device)
    start = cu[:-1].long()[:, None]
    valid = r[None, :] < (cu[1:].long()[:, None] - start)
    return torch.where(valid, start + r[None, :], total), valid


def _padded_attention(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, gqa):
    """Several segments at once: gather them into a zero-padded (B, H, M, D) batch, one SDPA
    with a per-segment mask, gather the valid rows back. Every index is computed on the
    device from cu_seqlens, so nothing is read back to the host (no sync, capturable)."""
    rows_q, valid_q = _segment_rows(cu_q, max_q, q.shape[0])  # (B, Mq)
    rows_k, valid_k = _segment_rows(cu_k, max_k, k.shape[0])  # (B, Mk)

    def gather(x, rows):  # (T, H, D) -> (B, H, M, D); padding reads an appended zero row
        x = torch.cat([x, x.new_zeros(1, *x.shape[1:])])
        return x[rows].transpose(1, 2)

    allowed = valid_k[:, None, :] & valid_q[:, :, None]  # (B, Mq, Mk)
    if causal:  # bottom-right: row r sees key c <= r + (len_k - len_q)
        diag = (valid_k.sum(1) - valid_q.sum(1))[:, None, None]
        r = torch.arange(max_q, device=q.device)[None, :, None]
        c = torch.arange(max_k, device=q.device)[None, None, :]
        allowed = allowed & (c <= r + diag)
    sees_any = allowed.any(-1, keepdim=True)  # (B, Mq, 1)
    # rows that see nothing (padding; causal rows before the first key) attend everywhere
    # instead of nowhere, so SDPA (and its backward) stay finite; they are zeroed below
    allowed = allowed | ~sees_any
    # additive in the query dtype: CPU SDPA converts a bool mask on every call (slower)
    mask = q.new_zeros(allowed.shape).masked_fill_(~allowed, -math.inf)[:, None]
    o = F.scaled_dot_product_attention(gather(q, rows_q), gather(k, rows_k), gather(v, rows_k),
                                       attn_mask=mask, scale=scale, enable_gqa=gqa)
    o = o.transpose(1, 2).masked_fill(~sees_any[..., None], 0.0)  # (B, Mq, Hq, D)
    # packed row t of segment s sits at flat position s * Mq + (t - cu_q[s])
    t = torch.arange(q.shape[0], device=q.device)
    seg = torch.searchsorted(cu_q[1:].long(), t, right=True)
    return o.reshape(-1, *o.shape[2:])[seg * max_q + t - cu_q[seg].long()]


def varlen_attention_ref(
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
) -> torch.Tensor:
    """Plain PyTorch that never syncs an accelerator: `cu_seqlens_*` are read back to the host
    only when they live in host memory (CPU), where that is a plain memory read.

    One segment (the decoder's prefill and decode, one image in the ViT) is the whole of q and
    k (cu_seqlens end at the token counts), so SDPA runs on it directly. Several segments run
    one SDPA each on a CPU (unmasked SDPA per window measured 3-4x faster there than one masked
    batch), and elsewhere as one padded batch with a block-diagonal mask whose indices are all
    computed on the device (`_padded_attention`), so a GPU without Triton is never stalled and
    the call can be captured in a CUDA graph; torch.compile traces that path on a CPU too.
    """
    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    scale = softmax_scale if softmax_scale is not None else d**-0.5
    # grouped-query heads are shared inside SDPA (query head h reads kv head h // (Hq/Hkv)),
    # not expanded into Hq copies of K/V
    gqa = hq != hkv
    batch = cu_seqlens_q.shape[0] - 1
    if batch <= 0 or q.shape[0] == 0:
        return torch.zeros_like(q)
    if batch == 1:
        return _segment_attention(q, k, v, causal, scale, gqa)
    if q.device.type != "cpu" or torch.compiler.is_compiling():
        return _padded_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q),
                                 int(max_seqlen_k), causal, scale, gqa)
    out = torch.empty_like(q)
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()  # host memory: no sync
    for i in range(batch):
        qs, qe, ks, ke = cq[i], cq[i + 1], ck[i], ck[i + 1]
        if qe > qs:
            out[qs:qe] = _segment_attention(q[qs:qe], k[ks:ke], v[ks:ke], causal, scale, gqa)
    return out


def _segment_attention(q, k, v, causal, scale, gqa):
    """One sequence: q (Lq, Hq, D), k/v (Lk, Hkv, D) -> (Lq, Hq, D)."""
    qi, ki, vi = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # (H, L, D)
    lq, lk = q.shape[0], k.shape[0]
    if not causal:
        oi = F.scaled_dot_product_attention(qi, ki, vi, scale=scale, enable_gqa=gqa)
    elif lq == lk:
        oi = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=scale,
                                            enable_gqa=gqa)
    else:
        mask = _bottom_right_causal_mask(lq, lk, q.device, q.dtype)  # (Lq, Lk)
        oi = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scale,
                                            enable_gqa=gqa)
        if lq > lk:  # rows that see no key: 0 (SDPA would give NaN)
            blind = torch.arange(lq, device=q.device) < lq - lk
            oi = oi.masked_fill(blind[:, None], 0.0)
    return oi.transpose(0, 1)
