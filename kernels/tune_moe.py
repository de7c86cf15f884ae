"""Tune fused_moe launch configs: `python -m kernels.tune_moe [--E 128 --H 2048 --I 768]`.

For each token count, every config in a small grid is first checked against the fp32
reference with the tolerance rule, then timed with triton.testing.do_bench; the fastest
correct one is written to kernels/configs/moe_E={E}_N={I}_device={device}.json, the table
`kernels.moe.launch_config` reads (nearest token count wins). `--quick` shrinks everything so
the harness itself runs on a CPU in the interpreter (the timings then mean nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _git_commit() -> str:
    from kernels.bench import _git_commit as commit

    return commit()


def search_space(quick: bool, decode: bool, fast: bool = False) -> list[dict]:
    """The configs tried: `quick` for the CPU harness check, `fast` a reduced GPU grid (about
    a tenth: the sizes that win on Hopper-class parts; scripts/gpu_check.sh's time budget)."""
    if quick:
        grid = [(16,), (16, 32), (32,), (1,), (1,)]
    elif fast:
        grid = [(16,) if decode else (16, 64, 128), (64, 128), (64, 128), (4, 8), (3,)]
    else:
        grid = [(16,) if decode else (16, 32, 64, 128), (32, 64, 128), (64, 128, 256),
                (4, 8), (2, 3, 4)]
    keys = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages")
    return [dict(zip(keys, values)) for values in itertools.product(*grid)]


def _time_ms(fn, cuda: bool) -> float:
    if cuda:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=10, rep=50))
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def tune(e, h, inter, top_k, tokens, quick, device, dtype, fast=False) -> dict[str, dict]:
    import torch

    from kernels import moe
    from kernels.testing import within_rule

    g = torch.Generator().manual_seed(0)
    w_gate_up = (torch.randn(e, h, 2 * inter, generator=g) / h**0.5).to(device, dtype)
    w_down = (torch.randn(e, inter, h, generator=g) / inter**0.5).to(device, dtype)
    table = {}
    for t in tokens:
        x = torch.randn(t, h, generator=g).to(device, dtype)
        logits = torch.randn(t, e, generator=g).to(device, dtype)
        args = (x, logits, w_gate_up, w_down, top_k)
        ref32 = moe.fused_moe_ref(*(a.float() for a in args[:4]), top_k)
        same = moe.fused_moe_ref(*args)
        best = None
        for cfg in search_space(quick, t <= moe.DECODE_MAX_TOKENS, fast):
            try:
                ok, msg = within_rule(moe.fused_moe(*args, config=cfg), ref32, same)
            except Exception as exc:  # e.g. out of shared memory on this device
                log.info("T=%d %s: %s", t, cfg, exc)
                continue
            if not ok:
                log.warning("T=%d %s gives a wrong result (%s); skipped", t, cfg, msg)
                continue
            ms = _time_ms(lambda a=args, c=cfg: moe.fused_moe(*a, config=c), device == "cuda")
            if best is None or ms < best[0]:
                best = (ms, cfg)
        if best is None:
            raise RuntimeError(f"no config gave a correct result at T={t}")
        log.info("T=%d best %.4f ms %s", t, *best)
        table[str(t)] = best[1]
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.tune_moe", description=__doc__)
    parser.add_argument("--E", type=int, default=128, help="experts")
    parser.add_argument("--H", type=int, default=2048, help="hidden size")
    parser.add_argument("--I", type=int, default=768, help="expert intermediate size")
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 16, 64, 256, 1024, 4096])
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--out", type=Path, help="folder for the JSON (default kernels/configs)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes; runs on a CPU")
    parser.add_argument("--grid", choices=["full", "fast"], default="full",
                        help="configs to try: the full grid, or a reduced one (~10x faster)")
    args = parser.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        parser.error("tuning needs a CUDA device; use --quick to exercise the harness on a CPU")
    if not cuda and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # only this CLI process
    from kernels import moe

    e, h, inter, top_k = (8, 48, 32, 3) if args.quick else (args.E, args.H, args.I, args.top_k)
    tokens = [1, 20] if args.quick else args.tokens
    device = torch.device("cuda" if cuda else "cpu")
    table = tune(e, h, inter, top_k, tokens, args.quick, device.type, getattr(torch, args.dtype),
                 fast=args.grid == "fast")
    out_dir = args.out or moe.CONFIG_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"moe_E={e}_N={inter}_device={moe._device_key(device)}.json"
    table["_comment"] = f"written by python -m kernels.tune_moe (top_k={top_k}, H={h})"
    # provenance (keys starting with "_" are not token counts: config_table skips them)
    table["_device"] = torch.cuda.get_device_name(device) if cuda else "cpu"
    table["_date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    table["_commit"] = _git_commit()
    cli_args = sys.argv[1:] if argv is None else argv
    table["_command"] = " ".join([sys.executable, "-m", "kernels.tune_moe", *cli_args])
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(path)  # noqa: T201
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
