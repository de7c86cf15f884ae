"""Checkpoint loading: config.json + safetensors (single file or sharded) -> our modules.

The model is built on the `meta` device (no memory, no init), then every parameter is
assigned a tensor read memory-mapped from the safetensors files, converted to the target
dtype and device. Checkpoint names map onto module names through ONE table (`RENAMES`);
the only tensor transformations are the expert-layout fixes below. Loading is strict: every
missing or unexpected tensor and every shape mismatch is reported in one error.

Block-wise FP8 checkpoints (config.json quantization_config, quant_method "fp8") are read
through vlm/fp8.py: FP8 tensors are dequantized on load, or kept in FP8 for the dense
projections where the GPU has scaled matmuls.

Expert layouts: the published Qwen3-VL-MoE files store `mlp.experts.gate_up_proj` as
[E, H, 2I] and `down_proj` as [E, I, H] (y = x @ W) — what we use; transformers 5.x
`save_pretrained` writes [E, 2I, H] / [E, H, I]. They are told apart by shape; when
H == 2I the shapes are identical and we refuse rather than guess. The published Qwen3.5-MoE
files store every expert apart (`mlp.experts.N.gate_proj/up_proj/down_proj.weight`, [I, H]
and [H, I]); they are stacked into the same [E, H, 2I] / [E, I, H] parameters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from vlm.config import ConfigError, ModelConfig

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

# checkpoint name prefix -> our module prefix (first match wins)
RENAMES: list[tuple[str, str]] = [
    ("model.visual.", "visual."),
    ("model.language_model.", "language_model."),
    ("lm_head.", "lm_head."),
    # original (pre-4.52 naming) checkpoints
    ("visual.", "visual."),
    ("model.", "language_model."),
]

EXPERT_SUFFIXES = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")

# tensors a checkpoint may carry that no model of ours uses: Qwen3.5's multi-token-prediction
# head (transformers skips it too)
IGNORED_PREFIXES = ("mtp.",)

# Qwen3.5-MoE's published files: one tensor per expert and projection (nn.Linear layout)
PER_EXPERT = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


class WeightsError(RuntimeError):
    """A checkpoint's tensors do not fit the model: the message lists every problem."""


def rename(name: str) -> str | None:
    for src, dst in RENAMES:
        if name.startswith(src):
            return dst + name[len(src):]
    return None


def checkpoint_name(ours: str) -> str:
    """The name a published checkpoint uses for our parameter `ours` (for error messages)."""
    for src, dst in RENAMES:
        if ours.startswith(dst):
            return src + ours[len(dst):]
    return ours


def resolve_checkpoint(path_or_id: str | os.PathLike, progress: ProgressFn | None = None) -> Path:
    """A local folder as is; anything else is a hub id fetched with huggingface_hub
    (`progress(done_bytes, total_bytes)` follows the download)."""
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise WeightsError(f"{p} is a file; give the checkpoint folder (with config.json)")
    name = str(path_or_id)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise WeightsError(f"checkpoint folder {p} does not exist (and {name!r} is not a hub id "
                           "like 'Qwen/Qwen3-VL-30B-A3B-Instruct')")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        kw = {"tqdm_class": _download_progress(progress)} if progress else {}
        return Path(snapshot_download(name, allow_patterns=[
            "*.json", "*.safetensors", "*.jinja", "*.txt", "tokenizer*"], **kw))
    except LocalEntryNotFoundError as e:
        raise WeightsError(
            f"{name!r} is not in the local Hugging Face cache and cannot be downloaded "
            f"(offline: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!r} or no "
            f"network). Download it once with network access, or pass a local folder. ({e})"
        ) from e
    except Exception as e:  # noqa: BLE001 - hub errors vary (auth, 404, network)
        raise WeightsError(f"could not fetch {name!r} from the Hugging Face hub: {e}") from e


def _download_progress(progress: ProgressFn):
    """A tqdm class for snapshot_download that forwards its byte counts to `progress`
    and draws nothing (the app shows its own progress bar)."""
    import io

    from huggingface_hub.utils import tqdm as hf_tqdm

    class Forward(hf_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False
            kwargs["file"] = io.StringIO()
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            out = super().update(n)
            if self.unit == "B" and self.total:
                progress(int(self.n), int(self.total))
            return out

    return Forward


def read_config(folder: Path) -> ModelConfig:
    f = folder / "config.json"
    if not f.exists():
        raise WeightsError(f"{folder} has no config.json: not a Hugging Face checkpoint folder")
    try:
        d = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{f} is not valid JSON: {e}") from e
    try:
        return ModelConfig.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{f}: {e}") from e


def tensor_files(folder: Path) -> dict[str, Path]:
    """Checkpoint tensor name -> the safetensors file holding it (index json or single file)."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = {n: folder / f for n, f in weight_map.items()}
        missing: dict[str, list[str]] = {}
        for n, f in files.items():
            if not f.exists():
                missing.setdefault(f.name, []).append(n)
        if missing:
            lines = [f"  {f}: {len(ns)} tensors, e.g. {sorted(ns)[0]}" for f, ns in
                     sorted(missing.items())]
            raise WeightsError(f"{folder}: shard file(s) listed in {index.name} are missing:\n"
                               + "\n".join(lines))
        return files
    singles = sorted(folder.glob("*.safetensors"))
    if not singles:
        raise WeightsError(f"{folder} has no *.safetensors files")
    from safetensors import safe_open

    files = {}
    for f in singles:
        with safe_open(f, framework="pt") as s:
            for n in s.keys():
                files[n] = f
    return files


def expert_layout(cfg: ModelConfig, shape: tuple[int, ...], name: str) -> str:
    """'published' ([E, H, 2I]) or 'transformers' ([E, 2I, H]) for a gate_up_proj shape."""
    t = cfg.text
    e, h, i2 = t.num_experts, t.hidden_size, 2 * t.moe_intermediate_size
    if h == i2:
        raise WeightsError(
            f"{name}: hidden_size ({h}) == 2*moe_intermediate_size ({i2}), so the published "
            f"[E, H, 2I] and transformers' [E, 2I, H] expert layouts have the same shape and "
            "cannot be told apart; refusing to guess")
    if tuple(shape) == (e, h, i2):
        return "published"
    if tuple(shape) == (e, i2, h):
        return "transformers"
    raise WeightsError(f"{name}: shape {list(shape)} is neither [E, H, 2I] = {[e, h, i2]} "
                       f"nor [E, 2I, H] = {[e, i2, h]}")


def load_weights(
    model: torch.nn.Module,
    cfg: ModelConfig,
    folder: Path,
    *,
    dtype: torch.dtype,
    device: torch.device,
    progress: ProgressFn | None = None,
) -> None:
    """Assign every parameter of a meta-device `model` from the checkpoint in `folder`."""
    from safetensors import safe_open

    from vlm import fp8

    files = tensor_files(folder)
    fp8_format = fp8.read_format(folder)  # None unless a block-wise FP8 checkpoint
    kept_fp8: set[str] = set()  # our parameters loaded as FP8 weight + scale, not dequantized
    if fp8_format is not None:
        kept_fp8 = fp8.keep_fp8_linears(model, fp8_format, fp8.quantized_names(files),
                                        checkpoint_name, device)
    params = dict(model.named_parameters())
    problems: list[str] = []
    plan: dict[str, str] = {}  # our name -> checkpoint name
    unexpected = []
    per_expert: dict[str, dict[tuple[int, str], str]] = {}  # our stacked name -> pieces
    for ck in files:
        if ck.startswith(IGNORED_PREFIXES):
            continue
        m = PER_EXPERT.match(ck)
        if m and rename(m[1] + ".down_proj") in params:
            stem = rename(m[1])
            key = stem + (".down_proj" if m[3] == "down_proj" else ".gate_up_proj")
            per_expert.setdefault(key, {})[(int(m[2]), m[3])] = ck
            continue
        ours = rename(ck)
        if ours in params:
            plan[ours] = ck
        elif fp8_format is not None and fp8.is_companion(ck):
            continue  # an FP8 scale, read with the tensor it scales
        else:
            unexpected.append(ck)
    missing = [n for n in params if n not in plan and n not in per_expert]
    if cfg.tie_word_embeddings and "lm_head.weight" in missing:
        missing.remove("lm_head.weight")
    problems += [f"  missing: {checkpoint_name(n)}" for n in sorted(missing)]
    problems += [f"  unexpected: {n}" for n in sorted(unexpected)]

    by_file: dict[Path, list[str]] = {}
    for ours, ck in plan.items():
        by_file.setdefault(files[ck], []).append(ours)
    total = sum(f.stat().st_size for f in by_file)
    done = 0
    loaded: dict[str, torch.Tensor] = {}
    layout = None
    read_device = str(device) if device.type == "cuda" else "cpu"
    for f, names in sorted(by_file.items()):
        with safe_open(f, framework="pt", device=read_device) as s:
            for ours in names:
                ck = plan[ours]
                shape = tuple(s.get_slice(ck).get_shape())
                want = tuple(params[ours].shape)
                transpose = False
                if ck.endswith(EXPERT_SUFFIXES):
                    if layout is None:
                        gu = ck.replace("down_proj", "gate_up_proj")
                        gu_shape = shape if gu == ck else tuple(
                            _shape_of(files, gu) or (0,))
                        layout = expert_layout(cfg, gu_shape, gu)
                    transpose = layout == "transformers"
                    if transpose:
                        shape = (shape[0], shape[2], shape[1])
                if shape != want:
                    problems.append(f"  wrong shape: {ck} is {list(shape)}, expected "
                                    f"{list(want)} for {ours}")
                    continue
                t = s.get_tensor(ck)
                if t.dtype == fp8.FP8 and ours not in kept_fp8:
                    t = _dequantize_fp8(t, ck, files, f, s, fp8_format, read_device)
                if transpose:
                    t = t.transpose(1, 2)
                keep = ours in kept_fp8  # FP8 weights and their fp32 scales stay as stored
                loaded[ours] = t.to(device=device, dtype=None if keep else dtype).contiguous()
        done += f.stat().st_size
        if progress is not None:
            progress(done, total)
    with contextlib.ExitStack() as stack:
        handles: dict[Path, object] = {}  # each shard's header is parsed once

        def tensor(ck: str) -> torch.Tensor:
            f = files[ck]
            if f not in handles:
                handles[f] = stack.enter_context(safe_open(f, framework="pt",
                                                           device=read_device))
            return handles[f].get_tensor(ck)

        for ours, pieces in sorted(per_expert.items()):
            t = _stack_experts(ours, pieces, tensor, tuple(params[ours].shape), problems)
            if t is not None:
                loaded[ours] = t.to(device=device, dtype=dtype).contiguous()
    if problems:
        raise WeightsError(f"checkpoint {folder} does not match {cfg.architecture}:\n"
                           + "\n".join(problems))
    if cfg.tie_word_embeddings and "lm_head.weight" not in loaded:
        loaded["lm_head.weight"] = loaded["language_model.embed_tokens.weight"]
    model.load_state_dict(loaded, strict=True, assign=True)
    log.info("loaded %d tensors from %s", len(loaded), folder)


def _dequantize_fp8(t, name, files, file, handle, fmt, read_device) -> torch.Tensor:
    """An FP8 checkpoint tensor times its block scales, in fp32 (see vlm/fp8.py)."""
    from safetensors import safe_open

    from vlm import fp8

    scale_name = name + fp8.SCALE_SUFFIX
    if fmt is None or scale_name not in files:
        raise WeightsError(f"{name} is float8_e4m3fn but "
                           + ("config.json has no fp8 quantization_config" if fmt is None
                              else f"the checkpoint has no {scale_name}"))
    if files[scale_name] == file:
        scale = handle.get_tensor(scale_name)
    else:
        with safe_open(files[scale_name], framework="pt", device=read_device) as other:
            scale = other.get_tensor(scale_name)
    try:
        return fp8.dequantize(t, scale, fmt.block, torch.float32)
    except fp8.Fp8FormatError as e:
        raise WeightsError(f"{name}: {e}") from e


def _shape_of(files: dict[str, Path], name: str) -> tuple[int, ...] | None:
    from safetensors import safe_open

    if name not in files:
        return None
    with safe_open(files[name], framework="pt") as s:
        return tuple(s.get_slice(name).get_shape())


def _stack_experts(ours: str, pieces: dict[tuple[int, str], str],
                   tensor: Callable[[str], torch.Tensor], want: tuple[int, ...],
                   problems: list[str]):
    """Per-expert nn.Linear weights -> our stacked [E, H, 2I] (gate | up) or [E, I, H]
    parameter; a missing expert or a wrong shape is added to `problems`."""
    e = want[0]
    projs = ("down_proj",) if ours.endswith(".down_proj") else ("gate_proj", "up_proj")
    names = {(i, p): pieces.get((i, p)) for i in range(e) for p in projs}
    absent = [f"{i}.{p}" for (i, p), n in names.items() if n is None]
    extra = sorted(f"{i}.{p}" for i, p in pieces if i >= e)
    if absent or extra:
        problems += [f"  missing: {ours} expert {a}" for a in absent[:8]]
        problems += [f"  unexpected: {ours} expert {x} (config has {e} experts)" for x in extra]
        return None
    rows = []
    for i in range(e):
        parts = []
        for p in projs:
            parts.append(tensor(names[(i, p)]).t())  # nn.Linear [out, in] -> [in, out]
        rows.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
    t = torch.stack(rows)
    if tuple(t.shape) != want:
        problems.append(f"  wrong shape: per-expert tensors stack to {list(t.shape)}, "
                        f"expected {list(want)} for {ours}")
        return None
    return t
