"""Kernel benchmark: `python -m kernels.bench [--quick] [--json OUT]` (also `deskpilot bench
kernels`).

Attention (TFLOP/s, counting only unmasked score entries):
  vit72          Qwen3-VL ViT, one 1080p screenshot: 8,160 tokens, 16 heads x 72
  vit80-full     Qwen2.5-VL ViT full-attention layers: 10,764 tokens, 16 x 80
  vit80-windows  Qwen2.5-VL windowed layers: 168 windows of 64 tokens, 16 x 80
  prefill128     causal prefill, 2,400 new tokens on a 3,000-token prefix, 32/4 heads x 128
against torch SDPA (flash, cuDNN, efficient backends), torch.nn.attention.varlen.varlen_attn,
flash-attn when installed, our Triton kernel with the head dim split (default) and masked,
and the plain-PyTorch reference.
Decode attention (GB/s of the K/V cache read, fraction of HBM bandwidth): one query token per
sequence over 4k, 8k and 16k cached keys, GQA 32/4 heads x 128 (Qwen3-VL-30B-A3B), batch 1
and 8: the split-K kernel (kernels/decode.py) with its automatic split count, the same
kernel with one split (one program per kv head, the plain kernel's grid), the reference, and
flash-attn's flash_attn_with_kvcache when installed.
MoE (E = 128, top-8, H = 2048, I = 768) at T = 1, 8, 2,400 tokens: ours vs the sorted-token
PyTorch reference and a torch._grouped_mm path; latency, GB/s of the selected experts' weights
(fraction of HBM bandwidth) and TFLOP/s (fraction of the bf16 dense peak).
RMSNorm: GB/s.
Gated delta rule (Qwen3.5's DeltaNet: 16/32 heads x 128): chunked prefill at 2,400 and 8,192
tokens (TFLOP/s of the chunked algorithm), one decode step and the conv1d update (GB/s),
against the references and flash-linear-attention when installed.

Every implementation's output is first checked against the fp32 reference with the
tolerance rule (kernels/testing.py); a failure is reported, not timed.
`--quick` shrinks every problem to a few dozen tokens so the whole script runs on a CPU in
seconds (Triton kernels then run in the interpreter: those timings mean nothing; the run
proves the harness and the correctness checks work). Results print as a table; `--json OUT`
also writes them with the device, date, git commit and command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

# (HBM GB/s, dense bf16 TFLOP/s) by device-name substring, most specific first
PEAKS = [
    ("H100 PCIe", (2000.0, 756.0)),
    ("H100", (3350.0, 989.0)),
    ("H200", (4800.0, 989.0)),
    ("A100", (2039.0, 312.0)),
    ("L40S", (864.0, 362.0)),
]


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _time_ms(fn, cuda: bool, quick: bool) -> float:
    """Median milliseconds per call (CUDA: triton.testing.do_bench, which flushes L2)."""
    if cuda:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100))
    if not quick:
        fn()  # warm-up (the correctness check already ran it once in quick mode)
    samples = []
    for _ in range(1 if quick else 5):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _measure(name, fn, check, flops, nbytes, cuda, quick) -> dict:
    row = {"impl": name}
    try:
        ok, msg = check(fn())
    except Exception as exc:  # an unsupported backend/shape is a result, not a crash
        return {**row, "status": f"unsupported: {type(exc).__name__}: {str(exc)[:160]}"}
    if not ok:
        return {**row, "status": f"WRONG: {msg}"}
    ms = _time_ms(fn, cuda, quick)
    row.update(status="ok", ms=ms, check=msg)
    if flops:
        row["tflops"] = flops / ms / 1e9
    if nbytes:
        row["gbps"] = nbytes / ms / 1e6
    return row


def _attention_cases(quick: bool):
    if quick:
        return [("vit72", [1, 7, 33], None, 1, 1, 72, False),
                ("vit80-windows", [16] * 3, None, 1, 1, 80, False),
                ("prefill128", [20], [36], 2, 1, 128, True)]
    return [("vit72", [8160], None, 16, 16, 72, False),
            ("vit80-full", [10764], None, 16, 16, 80, False),
            ("vit80-windows", [64] * 168, None, 16, 16, 80, False),
            ("prefill128", [2400], [5400], 32, 4, 128, True)]


def _visible_pairs(lq: int, lk: int, causal: bool) -> int:
    """Unmasked (query, key) pairs; causal is bottom-right aligned (row i sees i + lk - lq)."""
    if not causal:
        return lq * lk
    return sum(min(lk, max(0, i + 1 + lk - lq)) for i in range(lq))


def _sdpa_impl(backend, q, k, v, seqs_q, seqs_k, causal):
    """SDPA on padded-free batches: equal-length sequences stacked as a batch."""
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right

    if len(set(seqs_q)) != 1 or len(set(seqs_k)) != 1:
        raise ValueError("SDPA needs equal-length sequences")
    b, lq, lk = len(seqs_q), seqs_q[0], seqs_k[0]
    qb = q.view(b, lq, q.shape[1], -1).transpose(1, 2)
    kb = k.view(b, lk, k.shape[1], -1).transpose(1, 2)
    vb = v.view(b, lk, v.shape[1], -1).transpose(1, 2)
    mask = causal_lower_right(lq, lk) if causal else None

    def run():
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask,
                                                 enable_gqa=q.shape[1] != k.shape[1])
        return out.transpose(1, 2).reshape(q.shape)

    return run


def bench_attention(quick, cuda, triton_ok, device, dtype) -> list[dict]:
    rows = []
    for case in _attention_cases(quick):
        rows += _bench_attention_case(*case, quick, cuda, triton_ok, device, dtype)
    return rows


def _bench_attention_case(name, seqs_q, seqs_k, hq, hkv, d, causal,
                          quick, cuda, triton_ok, device, dtype) -> list[dict]:
    import torch

    from kernels import attention
    from kernels.testing import within_rule

    seqs_k = seqs_k or seqs_q
    g = torch.Generator().manual_seed(0)
    q = torch.randn(sum(seqs_q), hq, d, generator=g).to(device, dtype)
    k = torch.randn(sum(seqs_k), hkv, d, generator=g).to(device, dtype)
    v = torch.randn(sum(seqs_k), hkv, d, generator=g).to(device, dtype)

    def cu(seqs):
        return torch.tensor([0, *seqs], device=device).cumsum(0).to(torch.int32)

    args = (q, k, v, cu(seqs_q), cu(seqs_k), max(seqs_q), max(seqs_k))
    ref32 = attention.varlen_attention_ref(q.float(), k.float(), v.float(), *args[3:],
                                           causal=causal)
    same = attention.varlen_attention_ref(*args, causal=causal)

    def check(out):
        return within_rule(out, ref32, same)

    flops = 4 * d * hq * sum(_visible_pairs(lq, lk, causal) for lq, lk in zip(seqs_q, seqs_k))
    impls = {"reference": lambda: attention.varlen_attention_ref(*args, causal=causal)}
    rows = []
    if triton_ok:
        impls["triton split-D"] = lambda: attention.varlen_attention(*args, causal=causal)
        impls["triton masked-D"] = lambda: attention.varlen_attention(
            *args, causal=causal, split_head_dim=False)
    if cuda:
        from torch.nn.attention import SDPBackend

        for label, be in (("sdpa flash", SDPBackend.FLASH_ATTENTION),
                          ("sdpa cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("sdpa efficient", SDPBackend.EFFICIENT_ATTENTION)):
            try:
                impls[label] = _sdpa_impl(be, q, k, v, seqs_q, seqs_k, causal)
            except ValueError as exc:
                rows.append({"case": name, "impl": label, "status": f"unsupported: {exc}"})
        try:
            from torch.nn.attention.varlen import varlen_attn

            impls["torch varlen_attn"] = lambda: varlen_attn(
                *args, window_size=(-1, 0) if causal else (-1, -1), enable_gqa=hq != hkv)
        except ImportError:
            pass
        try:
            from flash_attn import flash_attn_varlen_func

            impls["flash-attn"] = lambda: flash_attn_varlen_func(*args, causal=causal)
        except ImportError:
            pass
    for label, fn in impls.items():
        row = _measure(label, fn, check, flops, 0, cuda, quick)
        rows.append({"case": name, "tokens_q": sum(seqs_q), "heads": f"{hq}/{hkv}",
                     "head_dim": d, "causal": causal, **row})
    return rows


def _decode_cases(quick: bool):
    """(name, cache lengths (one sequence each), Hq, Hkv, D)."""
    if quick:
        return [("decode-gqa", [33, 300], 4, 2, 64)]
    return [(f"decode{n // 1024}k b={b}", [n] * b, 32, 4, 128)
            for n in (4096, 8192, 16384) for b in (1, 8)]


def bench_decode(quick, cuda, triton_ok, device, dtype) -> list[dict]:
    import torch

    from kernels import decode
    from kernels.testing import within_rule

    rows = []
    for name, lengths, hq, hkv, d in _decode_cases(quick):
        g = torch.Generator().manual_seed(0)
        b, s = len(lengths), max(lengths)
        q = torch.randn(b, hq, d, generator=g).to(device, dtype)
        k = torch.randn(b, hkv, s, d, generator=g).to(device, dtype)
        v = torch.randn(b, hkv, s, d, generator=g).to(device, dtype)
        lens = torch.tensor(lengths, dtype=torch.int32, device=device)
        ref32 = decode.decode_attention_ref(q.float(), k.float(), v.float(), lens)
        same = decode.decode_attention_ref(q, k, v, lens)

        def check(out, ref32=ref32, same=same):
            return within_rule(out, ref32, same)

        nbytes = 2 * sum(lengths) * hkv * d * k.element_size()  # every valid key and value
        flops = 4 * sum(lengths) * hq * d
        args = (q, k, v, lens)
        impls = {"reference": lambda a=args: decode.decode_attention_ref(*a)}
        if triton_ok:
            impls["triton split-K"] = lambda a=args: decode.decode_attention(*a)
            impls["triton 1 split"] = lambda a=args: decode.decode_attention(*a, num_splits=1)
        if cuda:
            try:
                from flash_attn import flash_attn_with_kvcache

                # flash-attn wants (B, S, H, D) caches: a transposed view of the same memory
                impls["flash-attn kvcache"] = lambda a=args: flash_attn_with_kvcache(
                    a[0][:, None], a[1].transpose(1, 2), a[2].transpose(1, 2),
                    cache_seqlens=a[3])[:, 0]
            except ImportError:
                pass
        for label, fn in impls.items():
            row = _measure(label, fn, check, flops, nbytes, cuda, quick)
            if label == "triton split-K" and triton_ok:
                row["splits"] = decode.choose_splits(
                    b * hkv, s, decode.sm_count(q.device),
                    decode._launch_config(d, dtype, not cuda)["BLOCK_N"])[0]
            rows.append({"case": name, "batch": b, "cached_keys": s, "heads": f"{hq}/{hkv}",
                         "head_dim": d, **row})
    return rows


def _grouped_mm_moe(x, logits, w_gate_up, w_down, top_k):
    """Sorted tokens through torch._grouped_mm (CUDA, bf16, sm90+)."""
    import torch
    import torch.nn.functional as F

    from kernels.moe import route

    t, h = x.shape
    e, inter, _ = w_down.shape
    weights, ids = route(logits, top_k)
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    offs = torch.bincount(flat, minlength=e).cumsum(0).to(torch.int32)
    xs = x[order // top_k]  # (T*K, H) grouped by expert
    gu = torch._grouped_mm(xs, w_gate_up, offs=offs)  # (T*K, 2I)
    act = F.silu(gu[:, :inter]) * gu[:, inter:]
    down = torch._grouped_mm(act, w_down, offs=offs)  # (T*K, H)
    out = torch.empty_like(down)
    out[order] = down
    return (out.view(t, top_k, h).float() * weights[..., None]).sum(1).to(x.dtype)


def bench_moe(quick, cuda, triton_ok, device, dtype) -> list[dict]:
    import torch

    from kernels import moe
    from kernels.testing import within_rule

    e, h, inter, top_k = (8, 48, 32, 3) if quick else (128, 2048, 768, 8)
    g = torch.Generator().manual_seed(0)
    w_gate_up = (torch.randn(e, h, 2 * inter, generator=g) / h**0.5).to(device, dtype)
    w_down = (torch.randn(e, inter, h, generator=g) / inter**0.5).to(device, dtype)
    rows = []
    for t in (1, 20) if quick else (1, 8, 2400):
        x = torch.randn(t, h, generator=g).to(device, dtype)
        logits = torch.randn(t, e, generator=g).to(device, dtype)
        args = (x, logits, w_gate_up, w_down, top_k)
        ref32 = moe.fused_moe_ref(*(a.float() for a in args[:4]), top_k)
        same = moe.fused_moe_ref(*args)

        def check(out, ref32=ref32, same=same):
            return within_rule(out, ref32, same)

        experts_read = moe.route(logits, top_k)[1].unique().numel()
        nbytes = experts_read * 3 * h * inter * w_down.element_size()
        flops = 2 * t * top_k * 3 * h * inter
        impls = {"sorted-token reference": lambda a=args: moe.fused_moe_ref(*a)}
        if triton_ok:
            impls["triton fused_moe"] = lambda a=args: moe.fused_moe(*a)
        if cuda and hasattr(torch, "_grouped_mm"):
            impls["torch._grouped_mm"] = lambda a=args: _grouped_mm_moe(*a)
        for label, fn in impls.items():
            row = _measure(label, fn, check, flops, nbytes, cuda, quick)
            rows.append({"case": f"moe T={t}", "tokens": t, "experts_read": experts_read,
                         **row})
    return rows


def bench_rms_norm(quick, cuda, triton_ok, device, dtype) -> list[dict]:
    import torch

    from kernels import rmsnorm
    from kernels.testing import within_rule

    rows = []
    for t, h in ((37, 48),) if quick else ((2400, 2048), (8160, 1152), (1, 2048)):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(t, h, generator=g).to(device, dtype)
        w = torch.randn(h, generator=g).to(device, dtype)
        ref32 = rmsnorm.rms_norm_ref(x.float(), w.float(), 1e-6)
        same = rmsnorm.rms_norm_ref(x, w, 1e-6)

        def check(out, ref32=ref32, same=same):
            return within_rule(out, ref32, same)

        nbytes = 2 * x.numel() * x.element_size()
        impls = {"reference": lambda x=x, w=w: rmsnorm.rms_norm_ref(x, w, 1e-6)}
        if triton_ok:
            impls["triton"] = lambda x=x, w=w: rmsnorm.rms_norm(x, w, 1e-6)
        for label, fn in impls.items():
            rows.append({"case": f"rms_norm {t}x{h}",
                         **_measure(label, fn, check, 0, nbytes, cuda, quick)})
    return rows


def bench_delta_rule(quick, cuda, triton_ok, device, dtype) -> list[dict]:
    """Gated DeltaNet at Qwen3.5-35B-A3B's sizes (16 q/k heads, 32 value heads, 128 x 128):
    chunked prefill (TFLOP/s of the chunked algorithm), one decode step and the conv update
    (GB/s; the in-place timings include restoring the state, counted in the bytes)."""
    import torch

    from kernels import delta_rule as D
    from kernels.dispatch import _fla_importable
    from kernels.testing import within_rule

    hk, hv, dk, dv, conv = (1, 2, 16, 16, 48) if quick else (16, 32, 128, 128, 8192)
    g = torch.Generator().manual_seed(0)

    def inputs(t):
        q, k = (torch.randn(t, hk, dk, generator=g) for _ in range(2))
        v = torch.randn(t, hv, dv, generator=g)
        decay, beta = -0.3 * torch.rand(t, hv, generator=g), torch.rand(t, hv, generator=g)
        return [x.to(device, dtype) for x in (q, k, v, decay, beta)]

    fla = cuda and _fla_importable()
    rows = []
    kw = dict(use_qk_l2norm=True)
    for t in (70,) if quick else (2400, 8192):
        x = inputs(t)
        ref32 = D.chunk_gated_delta_rule_ref(*(a.float() for a in x), **kw)[0]
        same = D.chunk_gated_delta_rule_ref(*x, **kw)[0]

        def check(out, ref32=ref32, same=same):
            return within_rule(out[0], ref32, same)

        chunks = -(-t // D.CHUNK)
        bt = D.CHUNK
        flops = hv * chunks * 2 * (2 * bt * bt * (dk + dv) + 3 * bt * dk * dv)
        impls = {"reference": lambda x=x: D.chunk_gated_delta_rule_ref(*x, **kw)}
        if triton_ok:
            impls["triton"] = lambda x=x: D.chunk_gated_delta_rule(*x, **kw)
        if fla:
            impls["flash-linear-attention"] = lambda x=x: D.fla_chunk(*x, **kw)
        for label, fn in impls.items():
            rows.append({"case": f"gdn prefill T={t}", "tokens": t,
                         **_measure(label, fn, check, flops, 0, cuda, quick)})

    x = inputs(1)
    state0 = 0.1 * torch.randn(1, hv, dk, dv, generator=g).to(device)
    ref_state = state0.clone()
    ref32 = D.recurrent_step_ref(*(a.float() for a in x), ref_state, use_qk_l2norm=True)
    same = D.recurrent_step_ref(*x, state0.clone(), use_qk_l2norm=True)
    state = state0.clone()

    def step(impl):
        state.copy_(state0)
        return impl(*x, state, use_qk_l2norm=True)

    nbytes = 4 * state.numel() * 4  # restore (read + write) and the step (read + write)
    impls = {"reference": lambda: step(D.recurrent_step_ref)}
    if triton_ok:
        impls["triton"] = lambda: step(D.recurrent_step)
    if fla:
        impls["flash-linear-attention"] = lambda: step(D.fla_recurrent_step)
    for label, fn in impls.items():
        rows.append({"case": "gdn decode step", **_measure(
            label, fn, lambda out: within_rule(out, ref32, same), 0, nbytes, cuda, quick)})

    xc = torch.randn(1, conv, generator=g).to(device, dtype)
    w = torch.randn(conv, 4, generator=g).to(device, dtype)
    cstate0 = torch.randn(1, conv, 3, generator=g).to(device)
    ref32 = D.causal_conv1d_update_ref(xc.float(), cstate0.clone(), w.float())
    same = D.causal_conv1d_update_ref(xc, cstate0.clone(), w)
    cstate = cstate0.clone()

    def conv_step(impl):
        cstate.copy_(cstate0)
        return impl(xc, cstate, w)

    nbytes = 4 * cstate.numel() * 4 + w.numel() * w.element_size()
    impls = {"reference": lambda: conv_step(D.causal_conv1d_update_ref)}
    if triton_ok:
        impls["triton"] = lambda: conv_step(D.causal_conv1d_update)
    for label, fn in impls.items():
        rows.append({"case": f"conv1d update C={conv}", **_measure(
            label, fn, lambda out: within_rule(out, ref32, same), 0, nbytes, cuda, quick)})
    return rows


def _peaks(device_name: str, args) -> tuple[float | None, float | None]:
    hbm, tflops = None, None
    for key, (gbps, peak) in PEAKS:
        if key in device_name:
            hbm, tflops = gbps, peak
            break
    return args.hbm_gbps or hbm, args.peak_tflops or tflops


def _print_table(rows: list[dict]) -> None:
    for row in rows:
        cols = [f"{row['case']:<22}", f"{row['impl']:<24}"]
        if row.get("status") != "ok":
            cols.append(row.get("status", ""))
        else:
            cols.append(f"{row['ms']:10.4f} ms")
            for key, unit in (("tflops", "TFLOP/s"), ("gbps", "GB/s")):
                if key in row:
                    cols.append(f"{row[key]:9.2f} {unit}")
            for key in ("frac_peak_flops", "frac_hbm"):
                if key in row:
                    cols.append(f"{key}={row[key]:.2f}")
        print("  ".join(cols))  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; runs on a CPU")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write results here")
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--only", choices=["attention", "decode", "moe", "rms_norm",
                                           "delta_rule"],
                        action="append")
    parser.add_argument("--hbm-gbps", type=float, help="override the device's HBM bandwidth")
    parser.add_argument("--peak-tflops", type=float, help="override the dense bf16 peak")
    args = parser.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        parser.error("no CUDA device: full-size runs need a GPU; use --quick on a CPU")
    if not cuda and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # only this CLI process; see _triton.py
    from kernels._triton import HAVE_TRITON, interpreting

    triton_ok = HAVE_TRITON and (cuda or interpreting())
    device = "cuda" if cuda else "cpu"
    dtype = getattr(torch, args.dtype)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    hbm, peak = _peaks(device_name, args)
    rows = []
    benches = {"attention": bench_attention, "decode": bench_decode, "moe": bench_moe,
               "rms_norm": bench_rms_norm, "delta_rule": bench_delta_rule}
    for op in args.only or list(benches):
        rows += benches[op](args.quick, cuda, triton_ok, device, dtype)
    for row in rows:
        if row.get("status") == "ok" and peak and "tflops" in row:
            row["frac_peak_flops"] = row["tflops"] / peak
        if row.get("status") == "ok" and hbm and "gbps" in row:
            row["frac_hbm"] = row["gbps"] / hbm
    _print_table(rows)
    if args.json:
        import triton

        meta = {
            "device": device_name, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git_commit": _git_commit(), "command": " ".join([sys.executable, "-m",
                                                                "kernels.bench", *sys.argv[1:]]),
            "torch": torch.__version__, "triton": getattr(triton, "__version__", None),
            "dtype": args.dtype, "quick": args.quick,
            "triton_interpreter": bool(triton_ok and not cuda),
            "hbm_gbps": hbm, "peak_bf16_tflops": peak,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2, default=str))
    bad = [r for r in rows if str(r.get("status", "")).startswith("WRONG")]
    return 1 if bad else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
