"""Shared pieces of the training tests: our model loaded for training, and small samples."""

from __future__ import annotations

import torch

from tests.vlm_parity_checks import noise_image
from train.data import IGNORE, Sample


def load_ours(folder, dtype=torch.float32):
    """(our QwenVL on the CPU in `dtype`, its config, its processor) from a checkpoint."""
    from vlm.model import QwenVL
    from vlm.processor import ImageSettings, Processor
    from vlm.weights import load_weights, read_config

    cfg = read_config(folder)
    with torch.device("meta"):
        model = QwenVL(cfg)
    load_weights(model, cfg, folder, dtype=dtype, device=torch.device("cpu"))
    return model, cfg, Processor(folder, cfg.image_token_id, ImageSettings.for_model(cfg))


def make_sample(processor, images: list[tuple[int, int]], text: str, reply: str,
                seed: int = 0, history_reply: str | None = None) -> Sample:
    """A prompt with noise screenshots of the given (width, height), optionally an earlier
    assistant reply as context, and `reply` as the target."""
    parts = [{"type": "image", "image": noise_image(w, h, seed + k)}
             for k, (w, h) in enumerate(images)]
    messages = [{"role": "system", "content": "You are a GUI agent."},
                {"role": "user", "content": [{"type": "text", "text": text}, *parts[:1]]}]
    if history_reply is not None:
        messages += [{"role": "assistant", "content": history_reply},
                     {"role": "user", "content": parts[1:]}]
    prompt = processor(messages)
    target = processor.tokenizer(reply, add_special_tokens=False)["input_ids"]
    target += processor.end_token_ids[:1]
    return Sample(f"test sample {seed}", prompt.input_ids + target,
                  [IGNORE] * len(prompt.input_ids) + target, prompt.images)
