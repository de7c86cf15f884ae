"""Qwen2.5-VL vision tower (UI-TARS-1.5): windowed ViT -> RMSNorm 2x2 merger.

The rest of the family is shared: the decoder is text.py's with the Qwen2 switches that
config.family_dicts sets (q/k/v bias, no q/k norm, sectioned MRoPE, dense MLP), and the
attention, 2D rotary and patch embedding come from vision.py / layers.py. What differs here,
against transformers' `Qwen2_5_VisionTransformerPretrainedModel` (the oracle): patch 14 with
no bias and no learned position table; RMSNorm + SwiGLU blocks; attention inside windows of
`window_size` pixels (112 = 4x4 merged tokens) except in the `fullatt_block_indexes` blocks;
one merger (RMSNorm per patch -> 2x2 concat -> Linear, GELU, Linear) and no DeepStack.

Window order: patches arrive in 2x2 merge-block order. The tower permutes whole merge blocks
so that each window's blocks are contiguous (windows row-major, blocks row-major inside; the
windows at the right and bottom edges may be partial), runs every block in that order
(windowed blocks attend within windows, global ones within the frame, which the permutation
keeps contiguous) and un-permutes the merged tokens at the end.

Module names equal the checkpoint's under `model.visual.` (`visual.` in published files).
Shapes: N patches, D vision width, M = N / merge^2 merged tokens, O text width.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vlm.config import VisionConfig
from vlm.layers import GatedMLP, RMSNorm, run_block
from vlm.vision import (
    PatchEmbed,
    VisionAttention,
    frame_seqlens,
    merge_order_rows_cols,
    vision_rotary,
)


class WindowedBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.hidden_size, 1e-6)
        self.norm2 = RMSNorm(cfg.hidden_size, 1e-6)
        self.attn = VisionAttention(cfg)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, bias=True)

    def forward(self, x, cos, sin, cu_seqlens, max_len):
        x = x + self.attn(self.norm1(x), cos, sin, cu_seqlens, max_len)
        return x + self.mlp(self.norm2(x))


class RMSNormMerger(nn.Module):
    """RMSNorm each patch, concat each merge block (consecutive rows), MLP with exact GELU."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.merged = cfg.hidden_size * cfg.spatial_merge_size**2
        self.ln_q = RMSNorm(cfg.hidden_size, 1e-6)
        self.mlp = nn.Sequential(nn.Linear(self.merged, self.merged), nn.GELU(),
                                 nn.Linear(self.merged, cfg.out_hidden_size))

    def forward(self, x):  # (N, D) -> (M, O)
        return self.mlp(self.ln_q(x).view(-1, self.merged))


def window_order(grids: list[tuple[int, int, int]], merge: int, window: int):
    """Merged tokens of all frames listed window by window.

    `window` is the window side in merged tokens. Returns (order (M,) long: the merged-token
    index at each new position, window_lengths (W,) long in merged tokens). Each frame's
    tokens stay within that frame's slice, so per-frame cu_seqlens remain valid.
    """
    orders, lengths, offset = [], [], 0
    for t, h, w in grids:
        gh, gw = h // merge, w // merge
        nwh, nww = math.ceil(gh / window), math.ceil(gw / window)
        rows = torch.arange(gh).repeat_interleave(gw)  # row-major over the merged grid
        cols = torch.arange(gw).repeat(gh)
        win = (rows // window) * nww + cols // window  # (gh*gw,) window of each token
        win = (torch.arange(t)[:, None] * (nwh * nww) + win).reshape(-1)  # frames apart
        # stable: tokens keep their row-major order inside a window
        orders.append(torch.argsort(win, stable=True) + offset)
        lengths.append(torch.bincount(win, minlength=t * nwh * nww))
        offset += t * gh * gw
    return torch.cat(orders), torch.cat(lengths)


class WindowedVisionModel(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg, bias=False)
        self.blocks = nn.ModuleList(WindowedBlock(cfg) for _ in range(cfg.depth))
        self.merger = RMSNormMerger(cfg)
        self.checkpoint_blocks = False  # training: recompute each block in backward

    def forward(self, pixels: torch.Tensor, grids: list[tuple[int, int, int]]):
        """pixels (N, C) for images with patch grids [(t, h, w), ...] -> (merged (M, O), [])
        (no DeepStack levels in this family)."""
        cfg, dev = self.cfg, pixels.device
        m = cfg.spatial_merge_size
        unit = m * m
        order, win_lens = window_order(grids, m, cfg.window_size // (m * cfg.patch_size))
        order = order.to(dev)
        # patch-level permutation: whole merge blocks move together
        perm = (order[:, None] * unit + torch.arange(unit, device=dev)).reshape(-1)  # (N,)

        rows, cols = [], []
        for t, h, w in grids:
            r, c = merge_order_rows_cols(h, w, m, dev)
            rows.append(r.repeat(t))
            cols.append(c.repeat(t))
        cos, sin = vision_rotary(torch.cat(rows)[perm], torch.cat(cols)[perm], cfg.head_dim,
                                 cfg.rope_theta)  # (N, hd) each, window order
        x = self.patch_embed(pixels)[perm]  # (N, D), window order

        cu_full, max_full = frame_seqlens(grids, dev)
        win_patches = win_lens * unit
        cu_win = torch.cat([win_patches.new_zeros(1), win_patches.cumsum(0)]).to(
            device=dev, dtype=torch.int32)
        max_win = int(win_patches.max())
        for i, blk in enumerate(self.blocks):
            full = i in cfg.fullatt_block_indexes
            x = run_block(blk, self.checkpoint_blocks, x, cos, sin,
                          cu_full if full else cu_win, max_full if full else max_win)
        merged = self.merger(x)  # (M, O), window order
        out = torch.empty_like(merged)
        out[order] = merged  # back to the prompt's (row-major per image) token order
        return out, []
