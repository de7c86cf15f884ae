"""DIR/merged/: a complete checkpoint in the base's own format, from our trained model.

Same files as the base folder (config.json, tokenizer, preprocessor config, chat template,
generation config: copied), same safetensors shards with the same tensor names, dtypes and
expert layout as the base's ([E, H, 2I] published or [E, 2I, H] transformers), so whatever
loaded the base (vlm.load, transformers, vLLM) loads the result the same way.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch

from vlm.weights import EXPERT_SUFFIXES, rename, tensor_files

log = logging.getLogger(__name__)

MERGED_DIR = "merged"


def save_merged(model: torch.nn.Module, base: Path, out: Path) -> Path:
    """Write `model`'s weights into `out` laid out exactly like the checkpoint in `base`."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files = tensor_files(base)
    for f in sorted(base.iterdir()):
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy2(f, tmp / f.name)
    ours = {n: p.detach() for n, p in model.state_dict().items()}
    by_file: dict[Path, list[str]] = {}
    for name, f in files.items():
        by_file.setdefault(f, []).append(name)
    for f, names in sorted(by_file.items()):
        tensors = {}
        with safe_open(f, framework="pt") as s:
            for name in names:
                want = s.get_slice(name)
                shape, dtype = tuple(want.get_shape()), _dtype(want.get_dtype())
                t = ours[rename(name)]
                if name.endswith(EXPERT_SUFFIXES) and tuple(t.shape) != shape:
                    t = t.transpose(1, 2)  # the base keeps transformers' [E, 2I, H] layout
                if tuple(t.shape) != shape:
                    raise ValueError(f"{name}: trained shape {list(t.shape)} but the base "
                                     f"{f.name} has {list(shape)}")
                tensors[name] = t.to(device="cpu", dtype=dtype).contiguous()
            metadata = s.metadata() or {"format": "pt"}
        save_file(tensors, tmp / f.name, metadata=metadata)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log.info("merged checkpoint (%d tensors, base layout of %s) -> %s", len(files), base, out)
    return out


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "F64": torch.float64}


def _dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"unsupported tensor dtype {name!r} in the base checkpoint")
    return _DTYPES[name]
