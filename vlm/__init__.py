"""deskpilot's own vision-language model engine (Qwen3-VL, Qwen2.5-VL and Qwen3.5 families).

`vlm.load(path_or_hub_id, device=None, dtype=None, progress=None) -> Engine`;
`Engine.chat(messages, ...) -> ChatResult(text, token_ids, timings)`.
Names are resolved lazily so `import vlm` does not import torch.
"""

from __future__ import annotations

__all__ = ["load", "Engine", "ChatResult"]


def __getattr__(name: str):
    if name in __all__:
        from vlm import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'vlm' has no attribute {name!r}")
