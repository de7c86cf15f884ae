"""The model catalogue: checkpoints known to work with deskpilot, what they cost, what fits.

Each entry names its hub id, the reply dialect it speaks and the shape config of its
architecture (assets/configs/NAME.json, the published config.json values). Download size
and GPU memory per dtype are computed from that config by `train.plan` — the same function
`deskpilot train plan` uses — so the catalogue and the trainer never disagree. Downloads go
through huggingface_hub (resumable; cancel from another thread; disk space checked first).

No Qt here: the CLI (`deskpilot models`) and the app's Model tab both read this module.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from train.plan import (
    GIB,
    USABLE_FRACTION,
    PlanError,
    count_parameters,
    plan_memory,
    system_memory_bytes,
)

log = logging.getLogger(__name__)

SERVING_DTYPES = ("bf16", "fp8")
# Context the serving estimate reserves KV cache for: a few screenshots of history.
SERVING_CONTEXT_TOKENS = 16384


@dataclass(frozen=True)
class Entry:
    id: str  # hub id (or "deskpilot-mini" for the built-in model)
    name: str
    dialect: str
    shape: str  # assets/configs/<shape>.json: the architecture's published config values
    summary: str

    def parameters(self) -> int:
        return count_parameters(self.shape)[0].total

    def download_bytes(self) -> int:
        """bf16 safetensors: two bytes per parameter (the published files' format)."""
        return 2 * self.parameters()

    def memory(self, dtype: str, context_tokens: int = SERVING_CONTEXT_TOKENS) -> int:
        """GPU memory to serve it: weights in `dtype` + a KV cache of `context_tokens`."""
        count, config = count_parameters(self.shape)
        return plan_memory(count, config, mode="inference", dtype=dtype,
                           tokens=context_tokens).total


ENTRIES: tuple[Entry, ...] = (
    Entry("ByteDance-Seed/UI-TARS-1.5-7B", "UI-TARS-1.5-7B", "uitars-1.5", "uitars-1.5-7b",
          "ByteDance's GUI agent on Qwen2.5-VL-7B; absolute-pixel clicks"),
    Entry("Qwen/Qwen3-VL-2B-Instruct", "Qwen3-VL-2B-Instruct", "qwen3-vl", "qwen3-vl-2b",
          "smallest Qwen3-VL; fits almost any GPU, weaker grounding"),
    Entry("Qwen/Qwen3-VL-4B-Instruct", "Qwen3-VL-4B-Instruct", "qwen3-vl", "qwen3-vl-4b",
          "small dense Qwen3-VL with the computer_use tool format"),
    Entry("Qwen/Qwen3-VL-8B-Instruct", "Qwen3-VL-8B-Instruct", "qwen3-vl", "qwen3-vl-8b",
          "dense Qwen3-VL; a good single-GPU default"),
    Entry("Qwen/Qwen3-VL-30B-A3B-Instruct", "Qwen3-VL-30B-A3B-Instruct", "qwen3-vl",
          "qwen3-vl-30b-a3b", "Mixture-of-Experts, 3B active: fast for its quality"),
    Entry("Hcompany/Holo2-4B", "Holo2-4B", "qwen3-vl", "qwen3-vl-4b",
          "H company's GUI agent on Qwen3-VL-4B"),
    Entry("Hcompany/Holo2-8B", "Holo2-8B", "qwen3-vl", "qwen3-vl-8b",
          "H company's GUI agent on Qwen3-VL-8B"),
    Entry("Hcompany/Holo2-30B-A3B", "Holo2-30B-A3B", "qwen3-vl", "qwen3-vl-30b-a3b",
          "H company's GUI agent on Qwen3-VL-30B-A3B"),
)
# Qwen3.5-MoE checkpoints join once their architecture and shape config are in the project.
_QWEN35 = (
    Entry("Qwen/Qwen3.5-35B-A3B", "Qwen3.5-35B-A3B", "qwen3.5", "qwen3.5-35b-a3b",
          "hybrid Gated DeltaNet + attention MoE, 3B active"),
    Entry("Hcompany/Holo3-35B-A3B", "Holo3-35B-A3B", "qwen3.5", "qwen3.5-35b-a3b",
          "H company's GUI agent on Qwen3.5-35B-A3B"),
)


def entries() -> list[Entry]:
    """Every catalogue entry whose architecture this install can run."""
    found = list(ENTRIES)
    for entry in _QWEN35:
        try:
            count_parameters(entry.shape)
        except PlanError:
            continue
        found.append(entry)
    return found


def find(model_id: str) -> Entry | None:
    for entry in entries():
        if entry.id.lower() == model_id.lower() or entry.name.lower() == model_id.lower():
            return entry
    return None


@dataclass(frozen=True)
class Machine:
    gpu_name: str | None
    gpu_bytes: int | None  # usable memory of GPU 0 (after the context and allocator)
    cpu_bytes: int | None

    def fits(self, need: int) -> bool | None:
        """On the GPU if there is one, else in system memory (CPU inference works, slowly)."""
        have = self.gpu_bytes if self.gpu_bytes is not None else (
            int(self.cpu_bytes * 0.8) if self.cpu_bytes else None)
        return None if have is None else need <= have

    def describe(self) -> str:
        if self.gpu_bytes is not None:
            return f"{self.gpu_name}, {self.gpu_bytes / GIB:.0f} GiB usable"
        ram = f"{self.cpu_bytes / GIB:.0f} GiB RAM" if self.cpu_bytes else "unknown RAM"
        return f"no GPU (CPU only, {ram})"


def detect_machine() -> Machine:
    """GPU 0 through torch when it is already imported, else through nvidia-smi — the
    catalogue must not pay torch's import (seconds) in a remote-only app."""
    gpu_name = gpu_bytes = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu_name, gpu_bytes = props.name, int(props.total_memory * USABLE_FRACTION)
    elif shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=5, check=True).stdout
            name, mib = out.splitlines()[0].rsplit(",", 1)
            gpu_name, gpu_bytes = name.strip(), int(int(mib) * 2**20 * USABLE_FRACTION)
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
            log.info("nvidia-smi did not report a GPU: %s", e)
    return Machine(gpu_name, gpu_bytes, system_memory_bytes())


# ---------------------------------------------------------------------------- the hub cache


def cached_models(cache_dir: Path | None = None) -> dict[str, tuple[Path, int]]:
    """Hub models already downloaded: repo id → (newest snapshot folder, bytes on disk)."""
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return {}
    try:
        info = scan_cache_dir(cache_dir or hub_cache_dir())
    except CacheNotFound:
        return {}
    found: dict[str, tuple[Path, int]] = {}
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        if (Path(newest.snapshot_path) / "config.json").is_file():
            found[repo.repo_id] = (Path(newest.snapshot_path), repo.size_on_disk)
    return found


class DownloadError(RuntimeError):
    """A download could not start or finish; the message says why and what to do."""


class DownloadCancelled(DownloadError):
    pass


def hub_cache_dir() -> Path:
    """The hub cache as the environment says now (HF_HUB_CACHE, HF_HOME), read at each call:
    huggingface_hub's own constant is fixed when it is first imported."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def download(model_id: str, *, progress: Callable[[int, int], None] | None = None,
             cancel: threading.Event | None = None) -> Path:
    """Download (or resume) a model into the hub cache; returns its snapshot folder.

    `progress(done_bytes, total_bytes)` is called as files arrive; setting `cancel` stops
    at the next chunk (what arrived stays in the cache, and a later call resumes it).
    """
    if offline():
        raise DownloadError(f"cannot download {model_id}: HF_HUB_OFFLINE is set (offline). "
                            f"Unset it, or copy the checkpoint folder here and use its path.")
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError as e:  # pragma: no cover - huggingface_hub is a base dependency
        raise DownloadError("huggingface_hub is not installed") from e
    try:
        info = HfApi().model_info(model_id, files_metadata=True)
    except HfHubHTTPError as e:
        raise DownloadError(f"{model_id}: the hub refused ({e}). Check the id, or log in "
                            f"with `hf auth login` for gated models.") from e
    except Exception as e:  # no network: the hub client's own connection errors
        raise DownloadError(f"cannot reach the Hugging Face hub to download {model_id} "
                            f"(offline?): {type(e).__name__}: {e}") from e
    total = sum(s.size or 0 for s in (info.siblings or []))
    cache = hub_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    have = cached_models().get(model_id, (None, 0))[1]
    free = shutil.disk_usage(cache).free
    if total - have > free:
        raise DownloadError(f"{model_id} needs {(total - have) / GIB:.1f} GiB more but "
                            f"{cache} has {free / GIB:.1f} GiB free")
    done = [have]

    from tqdm.auto import tqdm as base_tqdm

    class _Progress(base_tqdm):  # huggingface_hub reports per-chunk byte counts through tqdm
        def __init__(self, *args, **kwargs):
            # kept ourselves: a disabled tqdm (HF_HUB_DISABLE_PROGRESS_BARS) sets no fields
            self._counts_bytes = kwargs.get("unit") == "B"
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"download of {model_id} cancelled; run it again "
                                        f"to resume")
            if self._counts_bytes:
                done[0] = min(total, done[0] + int(n or 0))
                if progress is not None:
                    progress(done[0], total)
            return super().update(n)

    try:
        folder = snapshot_download(model_id, tqdm_class=_Progress)
    except DownloadCancelled:
        raise
    except Exception as e:  # network or disk trouble mid-way: what arrived is kept
        raise DownloadError(f"download of {model_id} failed ({type(e).__name__}: {e}); "
                            f"run it again to resume") from e
    if progress is not None:
        progress(total, total)
    return Path(folder)
