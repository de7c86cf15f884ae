"""The model catalogue: sizes from train.plan, the hub cache listing, download guards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from app import catalogue
from train.plan import count_parameters, plan_memory

ROOT = Path(__file__).resolve().parents[1]


def test_every_entry_has_a_shape_and_a_known_dialect():
    from agent.dialects import DIALECT_NAMES

    assert len(catalogue.entries()) >= 8
    for entry in catalogue.entries():
        assert entry.dialect in DIALECT_NAMES, entry
        assert entry.parameters() > 10**9


def test_memory_is_the_train_plan_function():
    entry = catalogue.find("Qwen/Qwen3-VL-30B-A3B-Instruct")
    count, config = count_parameters(entry.shape)
    for dtype in ("bf16", "fp8"):
        expected = plan_memory(count, config, mode="inference", dtype=dtype,
                               tokens=catalogue.SERVING_CONTEXT_TOKENS).total
        assert entry.memory(dtype) == expected
    assert entry.download_bytes() == 2 * count.total
    assert catalogue.find("ui-tars-1.5-7b").id == "ByteDance-Seed/UI-TARS-1.5-7B"


def test_fits_uses_the_gpu_or_the_ram():
    gpu = catalogue.Machine("H200", 130 * 2**30, 64 * 2**30)
    cpu = catalogue.Machine(None, None, 24 * 2**30)
    big = catalogue.find("Qwen/Qwen3-VL-30B-A3B-Instruct")
    small = catalogue.find("Qwen/Qwen3-VL-2B-Instruct")
    assert gpu.fits(big.memory("bf16")) is True
    assert cpu.fits(big.memory("bf16")) is False and cpu.fits(small.memory("bf16")) is True
    assert catalogue.Machine(None, None, None).fits(1) is None


def _fake_hub_cache(root: Path, repo: str, source: Path) -> Path:
    """The hub cache's real layout: blobs, refs/main, snapshots/<commit>/files."""
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir()
    for i, file in enumerate(sorted(source.iterdir())):
        if file.is_file():
            blob = folder / "blobs" / f"{i:040d}"
            shutil.copy(file, blob)
            (snapshot / file.name).symlink_to(Path("../../blobs") / blob.name)
    return snapshot


def test_downloaded_models_are_listed(tmp_path, monkeypatch):
    from tests.tiny_checkpoints import tiny_checkpoint

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    snapshot = _fake_hub_cache(tmp_path, "someone/tiny-vl", tiny_checkpoint()[0])
    found = catalogue.cached_models()  # HF_HUB_CACHE as set now
    assert found["someone/tiny-vl"][0] == snapshot
    assert catalogue.cached_models(tmp_path) == found
    assert found["someone/tiny-vl"][1] > 0
    out = subprocess.run([sys.executable, "-m", "app.cli", "models", "list", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert listing["other_downloaded"] == {"someone/tiny-vl": str(snapshot)}
    assert {m["id"] for m in listing["models"]} >= {"ByteDance-Seed/UI-TARS-1.5-7B"}


def test_download_offline_is_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(catalogue.DownloadError, match="offline"):
        catalogue.download("Qwen/Qwen3-VL-2B-Instruct")
    out = subprocess.run([sys.executable, "-m", "app.cli", "models", "download",
                          "Qwen/Qwen3-VL-2B-Instruct"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 1 and "offline" in out.stderr and "Traceback" not in out.stderr


def _hub_reporting(monkeypatch, sizes: list[int]) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    info = SimpleNamespace(siblings=[SimpleNamespace(size=s) for s in sizes])
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", lambda self, *a, **k: info)


def test_download_checks_disk_space_before_starting(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    _hub_reporting(monkeypatch, [10**18])  # an exabyte: no disk has that free
    started = []
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda *a, **k: started.append(1))
    with pytest.raises(catalogue.DownloadError, match="GiB free"):
        catalogue.download("big/model")
    assert not started


def test_download_reports_progress_and_cancels_between_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    _hub_reporting(monkeypatch, [300, 700])
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def fake_snapshot(repo_id, tqdm_class):  # how huggingface_hub reports a file's bytes
        bar = tqdm_class(total=1000, unit="B", disable=True)
        for _ in range(10):
            bar.update(100)
            if len(seen) == 4:
                cancel.set()
        return str(tmp_path)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot)
    with pytest.raises(catalogue.DownloadCancelled, match="resume"):
        catalogue.download("org/model", progress=lambda d, t: seen.append((d, t)),
                           cancel=cancel)
    assert seen == [(100, 1000), (200, 1000), (300, 1000), (400, 1000)]
    cancel.clear()
    seen.clear()
    assert catalogue.download("org/model", progress=lambda d, t: seen.append((d, t))) \
        == tmp_path
    assert seen[-1] == (1000, 1000)


def test_info_of_an_unknown_model_exits_2():
    out = subprocess.run([sys.executable, "-m", "app.cli", "models", "info", "nope/nothing"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "not in the catalogue" in out.stderr
