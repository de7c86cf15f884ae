"""Mixture-of-Experts: route each token to top_k experts and sum their SwiGLU outputs.

Shapes (T tokens, E experts, H hidden, I expert intermediate size, K = top_k):
x (T, H), router_logits (T, E), w_gate_up (E, H, 2I) gate columns first then up,
w_down (E, I, H) — the layout of the published Qwen3-VL-MoE checkpoints (y = x @ W).
y = sum_k w_k * (silu(x @ Wg_e) * (x @ Wu_e)) @ Wd_e over the token's top_k experts e.

Algorithm (prefill):
1. `route`: softmax in fp32 -> top-k -> optional renormalise: weights (T, K), ids (T, K).
   Slot s = t * K + k names one (token, choice) pair.
2. `align_slots` (torch, no host sync): sort the slots by expert and pad each expert's run to
   a multiple of BLOCK_M with the sentinel T * K, so every BLOCK_M-row block of the sorted
   list belongs to one expert. Worked example, T = 3, K = 2, E = 4, BLOCK_M = 4:
       ids          = [[2, 0], [0, 3], [2, 0]]        -> flat ids [2, 0, 0, 3, 2, 0]
       expert 0: slots 1, 2, 5; expert 1: none; expert 2: slots 0, 4; expert 3: slot 3
       sorted_slots = [1, 2, 5, 6 | 0, 4, 6, 6 | 3, 6, 6, 6 | 6 ...]   (6 = T * K, padding)
       block_expert = [0, 2, 3, -1 ...]                   (-1: unused block, exits at once)
   The buffers are sized for the worst case, T*K + min(E, T*K) * (BLOCK_M - 1) rounded up,
   so the launch grid is known without reading the counts back to the host.
3. One grouped-GEMM launch for gate_up: each program takes one block of slots and BLOCK_N
   intermediate columns, gathers the tokens' rows of x, multiplies by that expert's gate and
   up columns (two fp32 accumulators), and writes silu(gate) * up to act (T*K, I).
4. One grouped-GEMM launch for down: act rows @ w_down[e], times the slot's routing weight in
   the epilogue, into out (T*K, H).
5. y = out.view(T, K, H).sum(1).

Decode (T <= 16): step 2 is skipped. The grid runs over the T*K slots directly; the first
slot that names an expert gathers every token routed to that expert (one BLOCK_M tile) and
the later duplicates exit, so each selected expert's weights are read once and the half
dozen small torch launches of the sort (more time than the GEMMs themselves at T = 1)
disappear.

Launch configs (BLOCK_M/N/K, warps, stages) come from kernels/configs/*.json keyed by E, I,
the device name and the token count (nearest key), falling back to moe_default.json.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from kernels._triton import check_device, interpreting, round_to, tl, triton

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("configs")
DECODE_MAX_TOKENS = 16  # up to here one BLOCK_M tile holds every token of an expert


@triton.jit
def _tile_rows(
    pid_m, IDS, SORTED_SLOTS, BLOCK_EXPERT, T, top_k,
    BLOCK_M: tl.constexpr, DECODE: tl.constexpr, SLOTS_PAD: tl.constexpr,
    K_PAD: tl.constexpr,
):
    """Which expert tile `pid_m` computes and its rows: (expert, slot per row, row valid,
    skip). Shared by both GEMMs so they agree on the tile -> rows mapping.

    Sorted path: the tile's expert and slots come from align_slots (expert -1: padding).
    Decode path (no sort): program pid_m looks at slot pid_m's expert; the first slot
    naming an expert gathers every token routed to it, later ones skip, so each selected
    expert's weights are read once.
    """
    n_slots = T * top_k
    if DECODE:
        e = tl.load(IDS + pid_m)
        earlier = tl.arange(0, SLOTS_PAD)
        ids_all = tl.load(IDS + earlier, mask=earlier < n_slots, other=-1)
        skip = tl.sum(((ids_all == e) & (earlier < pid_m)).to(tl.int32), 0) > 0
        tok = tl.arange(0, BLOCK_M)
        kk = tl.arange(0, K_PAD)
        ids_tk = tl.load(
            IDS + tok[:, None] * top_k + kk[None, :],
            mask=(tok[:, None] < T) & (kk[None, :] < top_k), other=-1,
        )
        match = ids_tk == e  # (BLOCK_M, K_PAD): at most one hit per token
        row_valid = tl.sum(match.to(tl.int32), 1) > 0
        slot = tok * top_k + tl.sum(tl.where(match, kk[None, :], 0), 1)
    else:
        e = tl.load(BLOCK_EXPERT + pid_m)
        skip = e < 0
        slot = tl.load(SORTED_SLOTS + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
        row_valid = slot < n_slots
    return e, slot, row_valid, skip


@triton.jit
def _moe_gate_up_kernel(
    # pointers
    X, W, ACT, SORTED_SLOTS, BLOCK_EXPERT, IDS,
    # sizes
    T, H, I, top_k,
    # strides (elements; the last dim of x and act is contiguous)
    stride_xt, stride_we, stride_wh, stride_wn, stride_at,
    # meta-parameters
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DECODE: tl.constexpr,  # program 0 axis = slots, experts found in-kernel (no sort)
    SLOTS_PAD: tl.constexpr,  # next power of two >= T * top_k (decode duplicate check)
    K_PAD: tl.constexpr,  # next power of two >= top_k
    INTERPRET: tl.constexpr,  # CPU interpreter numerics: fp32 dots, bf16 rounded by hand
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 inputs (no silent tf32), else None
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    e, slot, row_valid, skip = _tile_rows(
        pid_m, IDS, SORTED_SLOTS, BLOCK_EXPERT, T, top_k, BLOCK_M, DECODE, SLOTS_PAD, K_PAD
    )
    if skip:
        return  # padding tile, or an expert an earlier decode slot already handles
    tok = slot // top_k

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_valid = offs_n < I
    offs_k = tl.arange(0, BLOCK_K)
    w_base = W + e.to(tl.int64) * stride_we
    acc_gate = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        kc = k0 + offs_k
        k_valid = kc < H
        a = tl.load(
            X + tok[:, None] * stride_xt + kc[None, :],
            mask=row_valid[:, None] & k_valid[None, :], other=0.0,
        )  # (BLOCK_M, BLOCK_K)
        w_mask = k_valid[:, None] & n_valid[None, :]
        w_ptr = w_base + kc[:, None] * stride_wh + offs_n[None, :] * stride_wn
        wg = tl.load(w_ptr, mask=w_mask, other=0.0)  # (BLOCK_K, BLOCK_N) gate columns
        wu = tl.load(w_ptr + I * stride_wn, mask=w_mask, other=0.0)  # matching up columns
        if INTERPRET:
            acc_gate += tl.dot(a.to(tl.float32), wg.to(tl.float32))
            acc_up += tl.dot(a.to(tl.float32), wu.to(tl.float32))
        else:
            acc_gate = tl.dot(a, wg, acc_gate, input_precision=DOT_PRECISION)
            acc_up = tl.dot(a, wu, acc_up, input_precision=DOT_PRECISION)
    act = acc_gate / (1.0 + tl.exp(-acc_gate)) * acc_up  # silu(gate) * up, in fp32
    tl.store(
        ACT + slot[:, None] * stride_at + offs_n[None, :],
        round_to(act, ACT.dtype.element_ty, INTERPRET), mask=row_valid[:, None] & n_valid[None, :],
    )


@triton.jit
def _moe_down_kernel(
    # pointers
    ACT, W, OUT, SORTED_SLOTS, BLOCK_EXPERT, IDS, ROUTE_W,
    # sizes
    T, I, H, top_k,
    # strides (elements; the last dim of act and out is contiguous)
    stride_at, stride_we, stride_wi, stride_wn, stride_ot,
    # meta-parameters
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DECODE: tl.constexpr, SLOTS_PAD: tl.constexpr, K_PAD: tl.constexpr,
    INTERPRET: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    e, slot, row_valid, skip = _tile_rows(
        pid_m, IDS, SORTED_SLOTS, BLOCK_EXPERT, T, top_k, BLOCK_M, DECODE, SLOTS_PAD, K_PAD
    )
    if skip:
        return

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_valid = offs_n < H
    offs_k = tl.arange(0, BLOCK_K)
    w_base = W + e.to(tl.int64) * stride_we
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, I, BLOCK_K):
        kc = k0 + offs_k
        k_valid = kc < I
        a = tl.load(
            ACT + slot[:, None] * stride_at + kc[None, :],
            mask=row_valid[:, None] & k_valid[None, :], other=0.0,
        )
        w = tl.load(
            w_base + kc[:, None] * stride_wi + offs_n[None, :] * stride_wn,
            mask=k_valid[:, None] & n_valid[None, :], other=0.0,
        )
        if INTERPRET:
            acc += tl.dot(a.to(tl.float32), w.to(tl.float32))
        else:
            acc = tl.dot(a, w, acc, input_precision=DOT_PRECISION)
    route_w = tl.load(ROUTE_W + slot, mask=row_valid, other=0.0)  # fp32 routing weight
    out = acc * route_w[:, None]
    tl.store(
        OUT + slot[:, None] * stride_ot + offs_n[None, :],
        round_to(out, OUT.dtype.element_ty, INTERPRET), mask=row_valid[:, None] & n_valid[None, :],
    )


def align_slots(
    ids: torch.Tensor, num_experts: int, block_m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort (token, k) slots by expert, padded per expert to block_m (see the module doc).

    ids (T, K) int -> (sorted_slots (P,) int32 with sentinel T*K, block_expert (P/block_m,)
    int32 with -1 for unused blocks).
    """
    flat = ids.reshape(-1).long()
    n = flat.numel()
    capacity = n + min(num_experts, n) * (block_m - 1)
    capacity = triton.cdiv(capacity, block_m) * block_m
    # scatter_add, not bincount: bincount's output size depends on the data (a host sync)
    counts = torch.zeros(num_experts, dtype=torch.int64, device=ids.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))  # (E,) slots per expert
    padded = (counts + block_m - 1) // block_m * block_m
    pad_end = padded.cumsum(0)
    pad_start = pad_end - padded
    run_start = counts.cumsum(0) - counts
    order = torch.argsort(flat, stable=True)  # slots grouped by expert
    sorted_e = flat[order]
    rank = torch.arange(n, device=ids.device) - run_start[sorted_e]  # position in its run
    sorted_slots = torch.full((capacity,), n, dtype=torch.int32, device=ids.device)
    sorted_slots[pad_start[sorted_e] + rank] = order.to(torch.int32)
    block_first = torch.arange(0, capacity, block_m, device=ids.device)
    block_expert = torch.searchsorted(pad_end, block_first, right=True)
    block_expert = torch.where(block_expert < num_experts, block_expert, -1).to(torch.int32)
    return sorted_slots, block_expert


def _device_key(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    return torch.cuda.get_device_name(device).replace(" ", "_")


@functools.cache
def config_table(
    num_experts: int, inter: int, device_key: str, config_dir: Path = CONFIG_DIR
) -> dict[int, dict]:
    """{token count: launch config} for this problem and device, else the default table."""
    path = config_dir / f"moe_E={num_experts}_N={inter}_device={device_key}.json"
    if not path.exists():
        path = CONFIG_DIR / "moe_default.json"
    raw = json.loads(path.read_text())
    table = {int(k): v for k, v in raw.items() if not k.startswith("_")}
    if not table:
        raise ValueError(f"{path}: no token-count entries")
    log.debug("fused_moe configs from %s", path)
    return table


def launch_config(num_experts: int, inter: int, tokens: int, device: torch.device) -> dict:
    """The tuned launch config whose token-count key is nearest to `tokens`."""
    if interpreting() and device.type != "cuda":
        return {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "num_warps": 1, "num_stages": 1}
    table = config_table(num_experts, inter, _device_key(device))
    return dict(table[min(table, key=lambda key: abs(key - tokens))])


def fused_moe(
    x: torch.Tensor,
    router_logits: torch.Tensor,
    w_gate_up: torch.Tensor,
    w_down: torch.Tensor,
    top_k: int,
    *,
    renormalize: bool = True,
    config: dict | None = None,
) -> torch.Tensor:
    """Triton launcher; same contract as `fused_moe_ref`. `config` overrides the JSON table."""
    if x.dim() != 2 or router_logits.dim() != 2 or w_gate_up.dim() != 3 or w_down.dim() != 3:
        raise ValueError(
            f"expected x (T, H), logits (T, E), w_gate_up (E, H, 2I), w_down (E, I, H); got "
            f"{tuple(x.shape)}, {tuple(router_logits.shape)}, {tuple(w_gate_up.shape)}, "
            f"{tuple(w_down.shape)}"
        )
    t, h = x.shape
    e, inter, h_down = w_down.shape
    if router_logits.shape != (t, e) or w_gate_up.shape != (e, h, 2 * inter) or h_down != h:
        raise ValueError(
            f"shape mismatch: x {tuple(x.shape)}, logits {tuple(router_logits.shape)}, "
            f"w_gate_up {tuple(w_gate_up.shape)} (want ({e}, {h}, {2 * inter})), "
            f"w_down {tuple(w_down.shape)}"
        )
    if not 1 <= top_k <= e:
        raise ValueError(f"top_k={top_k} must be in [1, {e}]")
    if not (x.dtype == w_gate_up.dtype == w_down.dtype) or x.dtype not in (
        torch.float16, torch.bfloat16, torch.float32
    ):
        raise TypeError(f"x/weights must share fp16/bf16/fp32: {x.dtype}, {w_gate_up.dtype}")
    for name, tensor in (("router_logits", router_logits), ("w_gate_up", w_gate_up),
                         ("w_down", w_down)):
        if tensor.device != x.device:
            raise ValueError(f"{name} is on {tensor.device}, x on {x.device}")
    check_device(x)
    if t == 0:
        return torch.empty_like(x)
    x = x.contiguous()  # rows are gathered by token index; the hidden dim must be dense
    weights, ids = route(router_logits, top_k, renormalize)  # (T, K) fp32, int64
    decode = t <= DECODE_MAX_TOKENS
    cfg = dict(config) if config else launch_config(e, inter, t, x.device)
    if decode:
        cfg["BLOCK_M"] = max(16, triton.next_power_of_2(t))
    n_slots = t * top_k
    ids32 = ids.reshape(-1).to(torch.int32)
    if decode:
        sorted_slots = block_expert = ids32  # unused by the DECODE kernels
        rows = n_slots
    else:
        sorted_slots, block_expert = align_slots(ids, e, cfg["BLOCK_M"])
        rows = block_expert.numel()
    act = torch.empty(n_slots, inter, dtype=x.dtype, device=x.device)
    out = torch.empty(n_slots, h, dtype=x.dtype, device=x.device)
    common = dict(
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        DECODE=decode,
        SLOTS_PAD=max(2, triton.next_power_of_2(n_slots)),
        K_PAD=max(2, triton.next_power_of_2(top_k)),
        INTERPRET=interpreting(),
        DOT_PRECISION="ieee" if x.dtype == torch.float32 else None,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    _moe_gate_up_kernel[(rows, triton.cdiv(inter, cfg["BLOCK_N"]))](
        x, w_gate_up, act, sorted_slots, block_expert, ids32,
        t, h, inter, top_k,
        x.stride(0), w_gate_up.stride(0), w_gate_up.stride(1), w_gate_up.stride(2),
        act.stride(0),
        **common,
    )
    _moe_down_kernel[(rows, triton.cdiv(h, cfg["BLOCK_N"]))](
        act, w_down, out, sorted_slots, block_expert, ids32, weights.reshape(-1),
        t, inter, h, top_k,
        act.stride(0), w_down.stride(0), w_down.stride(1), w_down.stride(2), out.stride(0),
        **common,
    )
    return out.view(t, top_k, h).sum(dim=1)


def route(
    router_logits: torch.Tensor, top_k: int, renormalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax in fp32 -> top-k -> optional renormalise. Returns (weights fp32, ids int64)."""
    probs = torch.softmax(router_logits.float(), dim=-1)
    weights, ids = torch.topk(probs, top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids


# up to this many (token, expert) slots the accelerator reference gathers the selected experts'
# weights (gpt-fast's MoE decode); beyond it, torch._grouped_mm over tokens sorted by expert
GATHER_MAX_SLOTS = 64


def fused_moe_ref(
    x: torch.Tensor,
    router_logits: torch.Tensor,
    w_gate_up: torch.Tensor,
    w_down: torch.Tensor,
    top_k: int,
    *,
    renormalize: bool = True,
) -> torch.Tensor:
    """Plain PyTorch that never syncs an accelerator (no expert ids read back to the host).

    On a CPU the expert ids are read directly (host memory: no sync) and each used expert
    runs one matmul pair: the fastest CPU formulation (gathering the experts' weights costs a
    copy of them; torch._grouped_mm's CPU fallback loops over every expert). On other devices,
    and whenever torch.compile traces the call, the ids stay on the device, so a GPU without
    Triton is never stalled: `_moe_gathered` for decode-sized calls, `_moe_grouped` beyond in
    bf16 (torch._grouped_mm takes bf16 only), `_moe_dense` for other dtypes.
    """
    weights, ids = route(router_logits, top_k, renormalize)
    if x.device.type == "cpu" and not torch.compiler.is_compiling():
        return _moe_host_loop(x, weights, ids, w_gate_up, w_down)
    if x.shape[0] * top_k <= GATHER_MAX_SLOTS:
        return _moe_gathered(x, weights, ids, w_gate_up, w_down)
    if x.dtype == torch.bfloat16 and not _grouped_mm_failed:
        try:
            return _moe_grouped(x, weights, ids, w_gate_up, w_down)
        except RuntimeError as exc:  # an arch or weight layout this torch's grouped GEMM rejects
            _note_grouped_mm_failure(exc)
    return _moe_dense(x, weights, ids, w_gate_up, w_down)


_grouped_mm_failed = False  # set once torch._grouped_mm refused our weights; not retried


def _note_grouped_mm_failure(exc: Exception) -> None:
    global _grouped_mm_failed
    _grouped_mm_failed = True
    log.warning("torch._grouped_mm is unusable here (%s); the MoE reference falls back to "
                "computing every expert densely", exc)


def _moe_host_loop(x, weights, ids, w_gate_up, w_down):
    """Tokens sorted by expert, one matmul pair per used expert; ids must be in host memory.

    Each expert's rows are scaled by their routing weights and added straight into the
    (T, H) fp32 output (index_add_), so no (T*k, H) buffer is zeroed, scattered and summed.
    """
    t, h = x.shape
    top_k, inter = ids.shape[1], w_down.shape[1]
    if t == 1:  # decode: the k experts of one token in turn, no sorting or scatter
        out = None
        for j, e in enumerate(ids[0].tolist()):
            gu = x @ w_gate_up[e]  # (1, 2I)
            act = F.silu(gu[:, :inter]).mul_(gu[:, inter:])
            y = (act @ w_down[e]).float().mul_(weights[:, j : j + 1])  # (1, H)
            out = y if out is None else out.add_(y)
        return out.to(x.dtype)
    flat_ids = ids.reshape(-1)
    order = torch.argsort(flat_ids, stable=True)
    token_of = order // top_k  # which token each sorted slot belongs to
    slot_w = weights.reshape(-1)[order, None]  # (T*k, 1) fp32, in sorted order
    counts = torch.bincount(flat_ids, minlength=w_gate_up.shape[0]).tolist()
    out = torch.zeros(t, h, dtype=torch.float32, device=x.device)
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        rows = token_of[start : start + n]
        gu = x[rows] @ w_gate_up[e]  # (n, 2I)
        act = F.silu(gu[:, :inter]).mul_(gu[:, inter:])
        y = (act @ w_down[e]).float().mul_(slot_w[start : start + n])  # (n, H)
        out.index_add_(0, rows, y)
        start += n
    return out.to(x.dtype)


def _moe_gathered(x, weights, ids, w_gate_up, w_down):
    """Each (token, choice) slot multiplies by its own expert's weights, gathered by id:
    static shapes and no host read (CUDA-graph safe); costs a copy of T*k experts' weights,
    which is why it is only used for a handful of slots."""
    t, h = x.shape
    top_k, inter = ids.shape[1], w_down.shape[1]
    flat = ids.reshape(-1)  # (T*k,)
    xs = x.repeat_interleave(top_k, dim=0)[:, None, :]  # (T*k, 1, H)
    gu = torch.bmm(xs, w_gate_up[flat])[:, 0]  # (T*k, 2I)
    act = F.silu(gu[:, :inter]) * gu[:, inter:]
    y = torch.bmm(act[:, None, :], w_down[flat])[:, 0].float()  # (T*k, H)
    y = y * weights.reshape(-1, 1)
    return y.view(t, top_k, h).sum(1).to(x.dtype)


def _moe_grouped(x, weights, ids, w_gate_up, w_down):
    """Tokens sorted by expert through torch._grouped_mm with device-side group offsets."""
    t, h = x.shape
    e, inter = w_down.shape[0], w_down.shape[1]
    top_k = ids.shape[1]
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    token_of = order // top_k
    # scatter_add, not bincount: bincount's output size depends on the data
    counts = torch.zeros(e, dtype=torch.int64, device=x.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    offs = counts.cumsum(0).to(torch.int32)  # end row of each expert's group
    gu = torch._grouped_mm(x[token_of], w_gate_up, offs=offs)  # (T*k, 2I)
    act = F.silu(gu[:, :inter]) * gu[:, inter:]
    y = torch._grouped_mm(act, w_down, offs=offs).float()  # (T*k, H)
    y = y * weights.reshape(-1)[order, None]
    out = torch.zeros(t, h, dtype=torch.float32, device=x.device)
    return out.index_add_(0, token_of, y).to(x.dtype)


def _moe_dense(x, weights, ids, w_gate_up, w_down):
    """Every expert over every token, weighted by a (T, E) routing matrix that is zero for
    the experts a token did not choose: E / k times the needed work, but static shapes and
    no host read. Only for non-bf16 data on accelerators without Triton (rare: bf16 is the
    GPU dtype and takes `_moe_grouped`)."""
    t, h = x.shape
    inter = w_down.shape[1]
    combine = torch.zeros(t, w_down.shape[0], dtype=torch.float32, device=x.device)
    combine.scatter_(1, ids, weights)  # (T, E)
    out = torch.zeros(t, h, dtype=torch.float32, device=x.device)
    for e in range(w_down.shape[0]):
        gu = x @ w_gate_up[e]  # (T, 2I)
        act = F.silu(gu[:, :inter]) * gu[:, inter:]
        out += (act @ w_down[e]).float() * combine[:, e : e + 1]
    return out.to(x.dtype)
