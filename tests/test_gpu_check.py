"""scripts/gpu_check.sh --dry-run on a CPU machine: it lists every stage with the exact command
lines the GPU run executes, resolves the offline wheels, imports every module the stages run
and collects the GPU tests, without touching a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_dry_run_lists_imports_and_collects_everything(tmp_path):
    proc = _run("--dry-run", str(tmp_path / "out"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "dry run ok" in proc.stdout
    for command in (
        "-m pytest -m gpu",
        "-m kernels.tune_moe --E 128 --H 2048 --I 768 --top-k 8",
        f"-m kernels.bench --json {tmp_path / 'out'}/kernels-bench.json",
        "bench step --config qwen3-vl-30b-a3b --device cuda --compare transformers --json",
        "bench step --config uitars-1.5-7b --device cuda --compare transformers --json",
        "pip install --no-index --find-links",
    ):
        assert command in proc.stdout, (command, proc.stdout[-3000:])
    for module in ("kernels.decode", "kernels.ops", "vlm.fp8", "qwen_vl_utils", "pytest_timeout"):
        assert f"import {module}: ok" in proc.stdout
    collected = int(proc.stdout.split("gpu tests collected: ")[1].split()[0])
    assert collected >= 20  # kernels at real sizes, FP8, parity on CUDA
    assert "tests/test_kernels_decode.py" in proc.stdout
    assert not any((tmp_path / "out").glob("*.json"))  # nothing was run


def test_offline_wheel_folder_is_small_and_pure_python():
    wheels = sorted((ROOT / "assets" / "wheels").glob("*.whl"))
    assert wheels, "assets/wheels is empty"
    assert all(w.name.endswith("-py3-none-any.whl") for w in wheels), wheels
    assert sum(w.stat().st_size for w in wheels) < 4 * 2**20


def test_bad_arguments_are_refused():
    proc = _run("--frobnicate")
    assert proc.returncode == 2 and "unknown option --frobnicate" in proc.stderr
