"""Dialects: one model family's contract (prompt, history layout, image size, parser).

    get_dialect("uitars-1.5", history_n=5, max_pixels=None, language="English")
    dialect_for_checkpoint(config_json_dict) -> "uitars-1.5" | "uitars-1.0" | "qwen3-vl"
                                                | "qwen3.5"
    dialect_for_model_id("ByteDance-Seed/UI-TARS-1.5-7B") -> "uitars-1.5" (or None)

uitars-1.5  UI-TARS-1.5 (Qwen2.5-VL): "Thought/Action" calls, absolute pixels of the
            resized image, factor 28, 100..16384 x 28x28 pixels.
uitars-1.0  UI-TARS-1.0 (Qwen2-VL): same syntax, coordinates 0..1000, up to 2700 x 28x28.
qwen3-vl    Qwen3-VL: `computer_use` tool calls, 0..1000, factor 32, 4..16384 x 32x32.
qwen3.5     Qwen3.5 / Holo3: the same tool as Qwen3-Coder XML calls (JSON accepted), 0..1000.

Importing this package is cheap and side-effect free (no torch, no PIL at import time).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agent.dialects.qwen3vl import Qwen3VLDialect
from agent.dialects.qwen35 import Qwen35Dialect
from agent.dialects.uitars import UITarsDialect, uitars_10, uitars_15
from agent.protocols import Dialect

_FACTORIES: dict[str, Callable[..., Dialect]] = {
    "uitars-1.5": uitars_15,
    "uitars-1.0": uitars_10,
    "qwen3-vl": Qwen3VLDialect,
    "qwen3.5": Qwen35Dialect,
}
DIALECT_NAMES: tuple[str, ...] = tuple(_FACTORIES)

# config.json model_type / architectures -> dialect. UI-TARS-1.5 is a Qwen2.5-VL
# checkpoint and UI-TARS-1.0 a Qwen2-VL one; any Qwen3-VL (dense or MoE) speaks qwen3-vl,
# any Qwen3.5 (Holo3, Qwen3.6: the same architecture) qwen3.5.
_MODEL_TYPES = {
    "qwen2_5_vl": "uitars-1.5",
    "qwen2_vl": "uitars-1.0",
    "qwen3_vl": "qwen3-vl",
    "qwen3_vl_moe": "qwen3-vl",
    "qwen3_5": "qwen3.5",
    "qwen3_5_moe": "qwen3.5",
}
_ARCHITECTURES = {
    "Qwen2_5_VLForConditionalGeneration": "uitars-1.5",
    "Qwen2VLForConditionalGeneration": "uitars-1.0",
    "Qwen3VLForConditionalGeneration": "qwen3-vl",
    "Qwen3VLMoeForConditionalGeneration": "qwen3-vl",
    "Qwen3_5ForConditionalGeneration": "qwen3.5",
    "Qwen3_5MoeForConditionalGeneration": "qwen3.5",
}


def get_dialect(
    name: str, *, history_n: int = 5, max_pixels: int | None = None, language: str = "English"
) -> Dialect:
    """The dialect called `name` (see DIALECT_NAMES)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown dialect {name!r}; choose one of: {', '.join(DIALECT_NAMES)}")
    return _FACTORIES[name](history_n=history_n, max_pixels=max_pixels, language=language)


def dialect_for_checkpoint(config: dict) -> str:
    """The dialect a checkpoint speaks, from its config.json (model_type, architectures)."""
    if not isinstance(config, dict):
        raise TypeError(f"expected the checkpoint's config.json as a dict, got {type(config)}")
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in _MODEL_TYPES:
        return _MODEL_TYPES[model_type]
    architectures = config.get("architectures") or []
    for architecture in architectures if isinstance(architectures, list) else []:
        if isinstance(architecture, str) and architecture in _ARCHITECTURES:
            return _ARCHITECTURES[architecture]
    raise ValueError(
        f"cannot tell which dialect a checkpoint with model_type={model_type!r} and "
        f"architectures={architectures!r} speaks; known model types: "
        f"{', '.join(sorted(_MODEL_TYPES))}. Choose the dialect explicitly "
        f"({', '.join(DIALECT_NAMES)})."
    )


# Served model ids (vLLM's --served-model-name, a hub id, a checkpoint path) -> dialect,
# first match wins. Only names that say which family the model was trained as: a plain
# Qwen2.5-VL does not speak UI-TARS, so it matches nothing and the person is asked.
_MODEL_ID_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"ui[-_ ]?tars[-_ ]?1[._]5"), "uitars-1.5"),
    (re.compile(r"ui[-_ ]?tars[-_ ]?(1[._]0|(2|7|72)b)"), "uitars-1.0"),
    (re.compile(r"qwen[-_ ]?3[._]?[56]|holo[-_ ]?3"), "qwen3.5"),
    (re.compile(r"qwen[-_ ]?3[-_ ]?vl|holo[-_ ]?2"), "qwen3-vl"),
)


def dialect_for_model_id(model_id: str) -> str | None:
    """The dialect a served model speaks, judged from its id; None when the id does not say.

    Only the last path component counts, so a checkpoint served from
    /srv/models/UI-TARS-1.5-7B reads as UI-TARS-1.5 whatever folder holds it."""
    name = str(model_id or "").strip().rstrip("/").rsplit("/", 1)[-1].lower()
    for pattern, dialect in _MODEL_ID_PATTERNS:
        if pattern.search(name):
            return dialect
    return None


__all__ = [
    "DIALECT_NAMES",
    "Qwen35Dialect",
    "Qwen3VLDialect",
    "UITarsDialect",
    "dialect_for_checkpoint",
    "dialect_for_model_id",
    "get_dialect",
]
