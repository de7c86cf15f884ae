"""Ready-to-run trainer configs written beside an export, with the values its data needs.

A trainer's defaults break GUI-agent data: LLaMA-Factory cuts samples at 2048 tokens
(inside an image: "Image features and image tokens do not match") and shrinks images to
768x768 pixels (absolute click coordinates then point elsewhere); ms-swift resolves
relative image paths against the working directory. So the export measures its own data
and writes the settings down:

  longest sample   tokens of the longest sample as the chat template renders it: text
                   plus every image's tokens ((w/f)*(h/f) with f the patch size times the
                   2x2 merge: 28 for Qwen2-VL/2.5-VL, 32 for Qwen3-VL) and its two vision
                   marker tokens. Counted exactly with a tokenizer when one is given;
                   otherwise the text counts as its UTF-8 bytes, an upper bound for the
                   byte-level BPE tokenizers of these models.
  pixels           the largest and smallest image (w*h), so the trainer resizes nothing.
  mask_history     true for per-step samples (only the last reply of each is a target),
                   false for per-run ones (every assistant turn is a target).

LLaMA-Factory (OUT/llamafactory_sft.yaml, `llamafactory-cli train` takes it): template,
dataset + dataset_dir (the export folder, holding dataset_info.json), media_dir (the
export folder: image paths are relative to it), cutoff_len, image_max_pixels,
image_min_pixels, mask_history, plus LoRA defaults with the vision tower frozen.

ms-swift (OUT/swift_sft.yaml, `swift sft` takes it as its first argument): template,
dataset (absolute path), max_length, max_pixels, truncation_strategy delete (never cut a
sample inside an image), and an ENV block with ROOT_IMAGE_DIR (the absolute export
folder, against which the relative image paths resolve) and, for Qwen2/2.5-VL,
MAX_PIXELS. Per-message "loss" flags in the data decide what is trained.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LLAMAFACTORY_FILE = "llamafactory_sft.yaml"
SWIFT_FILE = "swift_sft.yaml"

# dialect -> (LLaMA-Factory template, ms-swift template, the dialect's published model)
FAMILIES = {
    "uitars-1.5": ("qwen2_vl", "qwen2_5_vl", "ByteDance-Seed/UI-TARS-1.5-7B"),
    "uitars-1.0": ("qwen2_vl", "qwen2_vl", "bytedance-research/UI-TARS-7B-SFT"),
    "qwen3-vl": ("qwen3_vl_nothink", "qwen3_vl", "Qwen/Qwen3-VL-30B-A3B-Instruct"),
}
VISION_MARKERS = "<|vision_start|><|vision_end|>"  # around each image's tokens


def family(dialect: str) -> tuple[str, str, str]:
    if dialect not in FAMILIES:
        raise ValueError(
            f"no trainer template known for dialect {dialect!r} (known: {sorted(FAMILIES)})"
        )
    return FAMILIES[dialect]


def chatml_text(messages: list[dict]) -> str:
    """The messages as Qwen's ChatML renders them, each image as its two marker tokens."""
    out = []
    for m in messages:
        body = "".join(
            VISION_MARKERS if p["type"] == "image" else p["text"] for p in m["content"]
        )
        out.append(f"<|im_start|>{m['role']}\n{body}<|im_end|>\n")
    return "".join(out)


def image_tokens(size: tuple[int, int], factor: int) -> int:
    width, height = size
    return (width // factor) * (height // factor)


def byte_count(text: str) -> int:
    return len(text.encode("utf-8"))


def tokenizer_counter(path: str | os.PathLike) -> Callable[[str], int]:
    """Exact text token counts with the tokenizer in `path` (a checkpoint folder)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass
class DataStats:
    """What the trainer settings are computed from; `add` one sample at a time."""

    count_text: Callable[[str], int] = byte_count
    exact: bool = False
    longest_tokens: int = 0
    longest_sample: str = ""
    max_pixels: int = 0
    min_pixels: int = 0
    max_image: tuple[int, int] | None = None
    samples: int = 0

    def add(self, name: str, messages: list[dict], sizes: list[tuple[int, int]],
            factor: int) -> int:
        """Count one sample (images of `sizes`, `factor` pixels per token side); its tokens."""
        tokens = self.count_text(chatml_text(messages))
        tokens += sum(image_tokens(s, factor) for s in sizes)
        self.samples += 1
        if tokens > self.longest_tokens:
            self.longest_tokens, self.longest_sample = tokens, name
        for size in sizes:
            pixels = size[0] * size[1]
            if pixels > self.max_pixels:
                self.max_pixels, self.max_image = pixels, tuple(size)
            if not self.min_pixels or pixels < self.min_pixels:
                self.min_pixels = pixels
        return tokens


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(values: dict, header: str) -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {_yaml_scalar(v)}" for k, v in value.items())
        elif isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"  - {_yaml_scalar(v)}" for v in value)
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def _header(stats: DataStats, trainer: str) -> str:
    how = "exact (tokenizer)" if stats.exact else "upper bound (text as UTF-8 bytes)"
    return (
        f"{trainer} config written by `deskpilot export` for the data beside it.\n"
        f"Computed from {stats.samples} samples: longest {stats.longest_tokens} tokens "
        f"({how}, {stats.longest_sample}),\n"
        f"largest image {stats.max_image} = {stats.max_pixels} pixels. "
        "Change the model or the training hyper-parameters freely;\n"
        "keep the data settings, or samples get cut inside an image or screenshots resized."
    )


def llamafactory_config(out: Path, dataset_name: str, stats: DataStats, *, template: str,
                        model: str, mask_history: bool) -> dict:
    root = str(out.resolve())
    return {
        "model_name_or_path": model,
        "image_max_pixels": stats.max_pixels,
        "image_min_pixels": stats.min_pixels,
        "trust_remote_code": True,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 64,
        "lora_target": "all",
        "freeze_vision_tower": True,
        "dataset": dataset_name,
        "dataset_dir": root,
        "media_dir": root,
        "template": template,
        "cutoff_len": stats.longest_tokens,
        "mask_history": mask_history,
        "overwrite_cache": True,
        "output_dir": str(out.resolve() / "llamafactory-output"),
        "logging_steps": 1,
        "save_steps": 500,
        "plot_loss": True,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "learning_rate": 1.0e-4,
        "num_train_epochs": 3.0,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.1,
        "bf16": True,
        "report_to": "none",
    }


def swift_config(out: Path, data_file: Path, stats: DataStats, *, template: str,
                 model: str) -> dict:
    env = {"ROOT_IMAGE_DIR": str(out.resolve())}
    if template in ("qwen2_vl", "qwen2_5_vl"):
        env["MAX_PIXELS"] = str(stats.max_pixels)  # the Qwen2/2.5-VL processor's own bound
    return {
        "model": model,
        "template": template,
        "dataset": [str(data_file.resolve())],
        "max_length": stats.longest_tokens,
        "max_pixels": stats.max_pixels,
        "truncation_strategy": "delete",
        "train_type": "lora",
        "lora_rank": 64,
        "target_modules": "all-linear",
        "freeze_vit": True,
        "torch_dtype": "bfloat16",
        "num_train_epochs": 3,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "learning_rate": 1.0e-4,
        "warmup_ratio": 0.1,
        "logging_steps": 1,
        "output_dir": str(out.resolve() / "swift-output"),
        "ENV": env,
    }


def write_config(path: Path, values: dict, stats: DataStats, trainer: str) -> Path:
    path.write_text(to_yaml(values, _header(stats, trainer)), encoding="utf-8")
    return path
