"""`deskpilot models list|download ID|info ID`: the catalogue of checkpoints known to work.

Sizes and memory come from app/catalogue.py (computed by train.plan, like `train plan`);
`list` marks what fits this machine and what is already in the hub cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from app.catalogue import (
    SERVING_DTYPES,
    DownloadCancelled,
    DownloadError,
    cached_models,
    detect_machine,
    entries,
    find,
)
from app.commands.common import EXIT_USAGE
from train.plan import GIB


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _row(entry, machine, cached) -> dict:
    memory = {dtype: entry.memory(dtype) for dtype in SERVING_DTYPES}
    return {
        "id": entry.id, "name": entry.name, "dialect": entry.dialect,
        "parameters": entry.parameters(), "download_bytes": entry.download_bytes(),
        "memory_bytes": memory,
        "fits": {dtype: machine.fits(need) for dtype, need in memory.items()},
        "downloaded": str(cached[entry.id][0]) if entry.id in cached else None,
        "summary": entry.summary,
    }


def _fits_word(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "?"}[value]


def cmd_list(args) -> int:
    machine, cached = detect_machine(), cached_models()
    rows = [_row(e, machine, cached) for e in entries()]
    known = {r["id"] for r in rows}
    others = {repo: path for repo, (path, _) in cached.items() if repo not in known}
    if args.json:
        print(json.dumps({"machine": machine.describe(), "models": rows,  # noqa: T201
                          "other_downloaded": {k: str(v) for k, v in others.items()}},
                         indent=2))
        return 0
    print(f"this machine: {machine.describe()}")  # noqa: T201
    print(f"{'model':<34} {'dialect':<11} {'params':>7} {'download':>10} "  # noqa: T201
          f"{'bf16':>9} {'fp8':>9}  fits  downloaded")
    for r in rows:
        fits = "/".join(_fits_word(r["fits"][d]) for d in SERVING_DTYPES)
        print(f"{r['id']:<34} {r['dialect']:<11} {r['parameters'] / 1e9:6.1f}B "  # noqa: T201
              f"{_gib(r['download_bytes']):>10} {_gib(r['memory_bytes']['bf16']):>9} "
              f"{_gib(r['memory_bytes']['fp8']):>9}  {fits:<5} "
              f"{'yes' if r['downloaded'] else ''}")
    for repo, path in sorted(others.items()):
        print(f"{repo:<34} (downloaded, not in the catalogue: {path})")  # noqa: T201
    print("memory: weights + a 16k-token KV cache; fits: bf16/fp8 on the GPU "  # noqa: T201
          "(or in RAM without one)")
    return 0


def cmd_info(args) -> int:
    entry = find(args.id)
    if entry is None:
        print(f"deskpilot models: {args.id!r} is not in the catalogue; "  # noqa: T201
              f"`deskpilot models list` shows it (a folder or hub id still works with "
              f"--policy local:PATH)", file=sys.stderr)
        return EXIT_USAGE
    row = _row(entry, detect_machine(), cached_models())
    if args.json:
        print(json.dumps(row, indent=2))  # noqa: T201
        return 0
    lines = [f"{entry.name}  ({entry.id})", f"  {entry.summary}",
             f"  dialect      {entry.dialect}",
             f"  parameters   {row['parameters'] / 1e9:.2f} B",
             f"  download     {_gib(row['download_bytes'])} (bf16 safetensors)"]
    for dtype in SERVING_DTYPES:
        lines.append(f"  memory {dtype:<5} {_gib(row['memory_bytes'][dtype])}  fits this "
                     f"machine: {_fits_word(row['fits'][dtype])}")
    lines.append(f"  downloaded   {row['downloaded'] or 'no'}")
    lines.append(f"  use it       deskpilot run \"...\" --policy local:{entry.id}")
    print("\n".join(lines))  # noqa: T201
    return 0


def cmd_download(args) -> int:
    from tqdm import tqdm

    bars: list = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="B", unit_scale=True, desc=args.id,
                             file=sys.stderr))
        bar = bars[0]
        bar.total = total
        bar.n = done
        bar.refresh()

    cancel = threading.Event()
    try:
        from app.catalogue import download

        folder = download(args.id, progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        print("\ndeskpilot models: download interrupted; run it again to resume",  # noqa: T201
              file=sys.stderr)
        return 130
    except DownloadCancelled as e:
        print(f"deskpilot models: {e}", file=sys.stderr)  # noqa: T201
        return 130
    except DownloadError as e:
        print(f"deskpilot models: {e}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        for bar in bars:
            bar.close()
    print(folder)  # noqa: T201
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deskpilot models",
                                description="Checkpoints known to work with deskpilot.")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the catalogue, what fits this machine, what is downloaded")
    ls.add_argument("--json", action="store_true")
    info = sub.add_parser("info", help="one model: dialect, size, memory per dtype, fit")
    info.add_argument("id")
    info.add_argument("--json", action="store_true")
    dl = sub.add_parser("download", help="download (or resume) a model into the hub cache")
    dl.add_argument("id")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return {"list": cmd_list, "info": cmd_info, "download": cmd_download}[args.command](args)
