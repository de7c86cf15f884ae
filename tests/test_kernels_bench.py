"""`python -m kernels.bench --quick` runs end to end on a CPU (Triton in the interpreter) and
writes the JSON record the GPU runs are reported from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_checks_and_records_every_kernel(tmp_path):
    out = tmp_path / "bench.json"
    drop = ("TRITON_INTERPRET", "DESKPILOT_KERNELS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    proc = subprocess.run(
        [sys.executable, "-m", "kernels.bench", "--quick", "--json", str(out)],
        cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(out.read_text())
    meta = record["meta"]
    assert {"device", "date", "git_commit", "command", "torch", "triton"} <= set(meta)
    assert "kernels.bench --quick" in meta["command"]
    rows = record["results"]
    by_impl = {(r["case"], r["impl"]): r for r in rows}
    expected = {
        ("vit72", "triton split-D"), ("vit72", "triton masked-D"), ("prefill128", "triton split-D"),
        ("moe T=1", "triton fused_moe"), ("moe T=20", "triton fused_moe"),
        ("rms_norm 37x48", "triton"), ("moe T=20", "sorted-token reference"),
        ("decode-gqa", "triton split-K"), ("decode-gqa", "triton 1 split"),
        ("decode-gqa", "reference"),
        ("gdn prefill T=70", "triton"), ("gdn decode step", "triton"),
        ("conv1d update C=48", "triton"),
    }
    if not torch.cuda.is_available():
        assert meta["triton_interpreter"] is True
    assert expected <= set(by_impl), sorted(by_impl)
    for key in expected:
        assert by_impl[key]["status"] == "ok", by_impl[key]
        assert by_impl[key]["ms"] > 0
    assert all(r["tflops"] > 0 for r in rows if r["case"] == "vit72" and r["status"] == "ok")
    assert by_impl[("moe T=1", "triton fused_moe")]["experts_read"] == 3  # one token, top-3
    split_k = by_impl[("decode-gqa", "triton split-K")]
    assert split_k["splits"] > 1 and split_k["gbps"] > 0 and split_k["cached_keys"] == 300
    assert "triton fused_moe" in proc.stdout  # the table went to stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_full_size_needs_a_gpu(capsys):
    from kernels.bench import main

    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "--quick" in capsys.readouterr().err


def test_quick_tune_writes_a_table_the_launcher_reads(tmp_path):
    from kernels.moe import config_table

    proc = subprocess.run(
        [sys.executable, "-m", "kernels.tune_moe", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = Path(proc.stdout.strip().splitlines()[-1])
    assert written.parent == tmp_path and written.name.startswith("moe_E=8_N=32_device=")
    device_key = written.stem.split("device=")[1]
    table = config_table(8, 32, device_key, tmp_path)
    assert sorted(table) == [1, 20]
    assert all(cfg["BLOCK_N"] in (16, 32) and cfg["BLOCK_M"] == 16 for cfg in table.values())
    provenance = json.loads(written.read_text())
    assert {"_device", "_date", "_commit", "_command"} <= set(provenance)
    assert "kernels.tune_moe --quick" in provenance["_command"]
