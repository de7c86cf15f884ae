"""Qwen-VL models: vision tower + text decoder + lm_head, and the 3D rope index.

One class for every family: Qwen3-VL-MoE, dense Qwen3-VL and Qwen2.5-VL differ only in the
vision tower (`vision_tower`) and in decoder switches read from the config (text.py);
Qwen3.5 swaps in its hybrid decoder (`text_decoder`, qwen3_5.py) and cache.
Module tree: `visual.*` (vision.py or qwen2_5_vl.py), `language_model.*` (text.py),
`lm_head`; the checkpoint names (`model.visual.*`, `model.language_model.*`, `lm_head.*`,
or the published `visual.*`, `model.*`) map onto it through the one table in weights.py.

Shapes: T tokens in this call, Nv image tokens among them, H hidden, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vlm.cache import KVCache
from vlm.config import HYBRID_FAMILIES, ModelConfig
from vlm.qwen2_5_vl import WindowedVisionModel
from vlm.qwen3_5 import HybridTextModel, new_hybrid_cache
from vlm.text import TextModel
from vlm.vision import VisionModel


def vision_tower(cfg: ModelConfig) -> nn.Module:
    """The family's ViT: (pixels (N, C), grids) -> (merged (M, H), [DeepStack (M, H)])."""
    if cfg.family == "qwen2_5_vl":
        return WindowedVisionModel(cfg.vision)
    return VisionModel(cfg.vision)


def text_decoder(cfg: ModelConfig) -> nn.Module:
    """The family's decoder: Qwen3.5's hybrid DeltaNet/attention one, or text.py's."""
    if cfg.family in HYBRID_FAMILIES:
        return HybridTextModel(cfg.text)
    return TextModel(cfg.text)


class QwenVL(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.visual = vision_tower(cfg)
        self.language_model = text_decoder(cfg)
        self.lm_head = nn.Linear(cfg.text.hidden_size, cfg.text.vocab_size, bias=False)

    def new_cache(self, capacity: int, dtype=None, device=None) -> KVCache:
        """K/V rows for every layer; for Qwen3.5 a HybridCache (K/V + DeltaNet states)."""
        t = self.cfg.text
        p = self.lm_head.weight
        if self.cfg.family in HYBRID_FAMILIES:
            return new_hybrid_cache(t, capacity, dtype or p.dtype, device or p.device)
        return KVCache(t.num_hidden_layers, t.num_key_value_heads, t.head_dim, capacity,
                       dtype or p.dtype, device or p.device)

    def encode_images(self, pixels: torch.Tensor, grids: list[tuple[int, int, int]]):
        """Flattened patches of several images -> (merged (M, H), DeepStack [(M, H)] * levels)."""
        return self.visual(pixels, grids)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        start: int,
        image_embeds: torch.Tensor | None = None,
        deepstack: list[torch.Tensor] | None = None,
        all_logits: bool = False,
    ) -> torch.Tensor:
        """input_ids (T,) at cache slots start..start+T with positions (3, T); the image
        tokens' rows of `image_embeds` (Nv, H) replace their embeddings in order.
        Returns logits (V,) for the last token, or (T, V) with all_logits."""
        x = self.language_model.embed_tokens(input_ids)  # (T, H)
        visual_index = None
        if image_embeds is not None and image_embeds.shape[0]:
            visual_index = (input_ids == self.cfg.image_token_id).nonzero()[:, 0]  # (Nv,)
            if visual_index.shape[0] != image_embeds.shape[0]:
                raise ValueError(f"{visual_index.shape[0]} image tokens in the prompt but "
                                 f"{image_embeds.shape[0]} image features")
            x = x.index_copy(0, visual_index, image_embeds.to(x.dtype))
        h = self.language_model(x, positions, cache, start, visual_index, deepstack)
        cache.length = start + input_ids.shape[0]
        return self.lm_head(h if all_logits else h[-1])

    def decode(self, token: torch.Tensor, slot: torch.Tensor, rope_position: torch.Tensor,
               cache: KVCache) -> torch.Tensor:
        """One decode step, all inputs (1,) long tensors on the device: `token` goes into cache
        row `slot` at MRoPE position `rope_position` (the same on all three axes) -> logits
        (V,). The caller tracks cache.length; this writes only the one row (and, for Qwen3.5,
        advances the DeltaNet states: the caller tracks them too, see hybrid_cache.py)."""
        positions = rope_position.view(1, 1).expand(3, 1)
        x = self.language_model.embed_tokens(token)  # (1, H)
        h = self.language_model.decode(x, positions, cache, slot)
        return self.lm_head(h[0])


def rope_index(
    input_ids: list[int], grids: list[tuple[int, int, int]], image_token_id: int, merge: int
) -> tuple[torch.Tensor, int]:
    """3D (T, H, W) positions for a prompt -> ((3, T) long, delta for decode).

    Text token p gets (p, p, p) counting from where the previous item ended; an image starting
    at s with a merged grid h' x w' gets (s, s + row, s + col) and text after it resumes at
    s + max(h', w'). During decode the token in cache slot p sits at p + delta on all axes.
    """
    n = len(input_ids)
    pos = torch.empty(3, n, dtype=torch.long)
    grid_iter = iter(grids)
    i, cur = 0, 0
    while i < n:
        if input_ids[i] != image_token_id:
            pos[:, i] = cur
            i, cur = i + 1, cur + 1
            continue
        try:
            t, h, w = next(grid_iter)
        except StopIteration:
            raise ValueError("more image placeholder runs in the prompt than images") from None
        gh, gw = h // merge, w // merge
        count = t * gh * gw
        if input_ids[i: i + count] != [image_token_id] * count or (
                i + count < n and input_ids[i + count] == image_token_id):
            raise ValueError(f"image at token {i} needs exactly {count} placeholder tokens")
        tt = torch.arange(t).view(t, 1, 1).expand(t, gh, gw).reshape(-1)
        rr = torch.arange(gh).view(1, gh, 1).expand(t, gh, gw).reshape(-1)
        cc = torch.arange(gw).view(1, 1, gw).expand(t, gh, gw).reshape(-1)
        pos[0, i: i + count] = tt + cur
        pos[1, i: i + count] = rr + cur
        pos[2, i: i + count] = cc + cur
        i += count
        cur += max(gh, gw)
    delta = (int(pos.max()) + 1 - n) if n else 0
    return pos, delta
