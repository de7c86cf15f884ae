"""Qwen3-VL vision tower: native-resolution ViT -> 2x2 merger, plus DeepStack features.

References: transformers `Qwen3VLMoeVisionModel` (the oracle for every number here) and the
Qwen3-VL report. Module names equal the checkpoint's tensor names under `model.visual.`.

Shapes: N patches (all images packed, each image's patches in 2x2 merge-block order),
K flattened pixels per patch (see PatchEmbed), D vision width,
M = N / 4 merged tokens, O text width (out_hidden_size).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlm.config import VisionConfig
from vlm.layers import apply_rotary, packed_attention, run_block

# rows per block for the row-wise parts of a ViT block (projections, rotary, MLP): small
# enough that a block's activations stay in cache, large enough for efficient matmuls
ROW_BLOCK = 1024

class PatchEmbed(nn.Module):
    """The Conv3d whose stride equals its kernel is a matmul over flattened patches.

    Stored with the Conv3d's weight shape (D, c, T, P, P) so checkpoints load unchanged;
    applied as (N, K) @ (K, D) because Conv3d is slow for this case. Input patches either
    carry all T frames (K = c*T*P*P) or one frame of a still image (K = c*P*P): then the
    kernel is summed over time, which equals applying it to T identical frames.
    """

    def __init__(self, cfg: VisionConfig, bias: bool = True):
        super().__init__()
        p, t = cfg.patch_size, cfg.temporal_patch_size
        self.proj = nn.Module()
        self.proj.weight = nn.Parameter(torch.empty(cfg.hidden_size, cfg.in_channels, t, p, p))
        self.proj.bias = nn.Parameter(torch.empty(cfg.hidden_size)) if bias else None  # 2.5: none

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.proj.weight  # (D, c, T, P, P)
        if x.shape[1] != w[0].numel():
            w = w.sum(dim=2)  # still image: (D, c, P, P)
        x = x.to(w.dtype)  # (N, K)
        if self.proj.bias is None:
            return x @ w.reshape(w.shape[0], -1).t()  # (N, D)
        return torch.addmm(self.proj.bias, x, w.reshape(w.shape[0], -1).t())  # (N, D)


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x, cos, sin, cu_seqlens, max_len):
        n, h = x.shape[0], self.num_heads
        hd = self.qkv.out_features // (3 * h)
        # q, k, v heads written head-major (3*heads, N, hd): attention then reads each
        # head's rows densely (measured faster in CPU SDPA than the projection's strided view)
        heads = x.new_empty(3 * h, n, hd)
        # projection and rotary over row blocks, so the (rows, 3*D) projection stays in cache;
        # q and k are rotated together, in fp32 as the reference does (bf16 angles lose
        # position precision)
        for r in range(0, n, ROW_BLOCK):
            rows = slice(r, r + ROW_BLOCK)
            qkv = self.qkv(x[rows]).view(-1, 3 * h, hd)  # (rows, 3*heads, hd)
            qk_out = heads[: 2 * h, rows].transpose(0, 1)  # (rows, 2*heads, hd) view
            if x.dtype == torch.float32:
                apply_rotary(qkv[:, : 2 * h], cos[rows], sin[rows], out=qk_out)
            else:
                qk_out.copy_(apply_rotary(qkv[:, : 2 * h].float(), cos[rows], sin[rows]))
            heads[2 * h:, rows].transpose(0, 1).copy_(qkv[:, 2 * h:])
        q, k, v = heads.transpose(0, 1).split(h, dim=1)  # each (N, heads, hd)
        o = packed_attention(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, causal=False)
        return self.proj(o.reshape(n, -1))


class VisionMLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.linear_fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.linear_fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.approximate = "tanh" if cfg.hidden_act == "gelu_pytorch_tanh" else "none"

    def forward(self, x):
        y = self.linear_fc1(x)
        if torch.is_grad_enabled():
            return self.linear_fc2(F.gelu(y, approximate=self.approximate))
        return self.linear_fc2(torch.ops.aten.gelu_(y, approximate=self.approximate))


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.attn = VisionAttention(cfg)
        self.mlp = VisionMLP(cfg)

    def forward(self, x, cos, sin, cu_seqlens, max_len):
        x = x + self.attn(self.norm1(x), cos, sin, cu_seqlens, max_len)
        if torch.is_grad_enabled():
            return x + self.mlp(self.norm2(x))
        # norm -> MLP -> residual per row block: the (rows, intermediate) activation stays
        # in cache instead of a fresh (N, intermediate) buffer per block
        for r in range(0, x.shape[0], ROW_BLOCK):
            xs = x[r: r + ROW_BLOCK]
            xs += self.mlp(self.norm2(xs))
        return x


class PatchMerger(nn.Module):
    """LayerNorm, concat each 2x2 block (consecutive in merge order), MLP with exact GELU.

    The main merger normalises each patch before the concat (post_shuffle=False); the
    DeepStack mergers normalise the concatenated vector (post_shuffle=True).
    """

    def __init__(self, cfg: VisionConfig, post_shuffle: bool):
        super().__init__()
        self.merged = cfg.hidden_size * cfg.spatial_merge_size**2
        self.post_shuffle = post_shuffle
        self.norm = nn.LayerNorm(self.merged if post_shuffle else cfg.hidden_size, eps=1e-6)
        self.linear_fc1 = nn.Linear(self.merged, self.merged)
        self.linear_fc2 = nn.Linear(self.merged, cfg.out_hidden_size)

    def forward(self, x):  # (N, D) -> (M, O)
        x = self.norm(x.view(-1, self.merged)) if self.post_shuffle else self.norm(x)
        return self.linear_fc2(F.gelu(self.linear_fc1(x.view(-1, self.merged))))


def merge_order_rows_cols(h: int, w: int, m: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of each patch of an h x w grid listed in m x m merge-block order."""
    rows = torch.arange(h, device=device).view(h // m, m, 1, 1).expand(h // m, m, w // m, m)
    cols = torch.arange(w, device=device).view(1, 1, w // m, m).expand(h // m, m, w // m, m)
    # (block_row, in_row, block_col, in_col) -> (block_row, block_col, in_row, in_col)
    return rows.permute(0, 2, 1, 3).reshape(-1), cols.permute(0, 2, 1, 3).reshape(-1)


class VisionModel(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Embedding(cfg.num_position_embeddings, cfg.hidden_size)
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.depth))
        self.merger = PatchMerger(cfg, post_shuffle=False)
        self.deepstack_merger_list = nn.ModuleList(
            PatchMerger(cfg, post_shuffle=True) for _ in cfg.deepstack_visual_indexes)
        self.checkpoint_blocks = False  # training: recompute each block in backward

    def _positions(self, grids: list[tuple[int, int, int]], device):
        """Per patch: row/col in merge order, and the 4 bilinear taps into the learned table.

        align_corners=True: output index i maps to i*(side-1)/(n-1) in the table, taps
        floor/floor+1 clamped to the border, weights the hat function. Computed in fp32.
        """
        side, m = self.cfg.grid_side, self.cfg.spatial_merge_size
        rows, cols, idx, wts = [], [], [], []
        for t, h, w in grids:
            r, c = merge_order_rows_cols(h, w, m, device)
            taps_r, w_r = _axis_taps(r, h, side)
            taps_c, w_c = _axis_taps(c, w, side)
            i = (taps_r[:, :, None] * side + taps_c[:, None, :]).reshape(-1, 4)
            wt = (w_r[:, :, None] * w_c[:, None, :]).reshape(-1, 4)
            rows.append(r.repeat(t))
            cols.append(c.repeat(t))
            idx.append(i.repeat(t, 1))
            wts.append(wt.repeat(t, 1))
        return torch.cat(rows), torch.cat(cols), torch.cat(idx), torch.cat(wts)

    def forward(self, pixels: torch.Tensor, grids: list[tuple[int, int, int]]):
        """pixels (N, K) for images with patch grids [(t, h, w), ...] ->
        (merged (M, O), [deepstack (M, O) per DeepStack level])."""
        dev = pixels.device
        x = self.patch_embed(pixels)  # (N, D)
        rows, cols, idx, wts = self._positions(grids, dev)
        table = self.pos_embed.weight  # (side*side, D)
        if table.dtype == torch.float32:  # the 4 weighted taps summed in one op, no (N, 4, D)
            pos = F.embedding_bag(idx, table, per_sample_weights=wts, mode="sum")  # (N, D)
        else:
            pos = (self.pos_embed(idx) * wts[:, :, None]).sum(1)  # (N, D), fp32 weights
        x = x + pos.to(x.dtype)

        cos, sin = vision_rotary(rows, cols, self.cfg.head_dim, self.cfg.rope_theta)
        cu, max_len = frame_seqlens(grids, dev)
        deepstack = []
        for i, blk in enumerate(self.blocks):
            x = run_block(blk, self.checkpoint_blocks, x, cos, sin, cu, max_len)
            if i in self.cfg.deepstack_visual_indexes:
                j = self.cfg.deepstack_visual_indexes.index(i)
                deepstack.append(self.deepstack_merger_list[j](x))
        return self.merger(x), deepstack


def vision_rotary(rows: torch.Tensor, cols: torch.Tensor, head_dim: int, theta: float):
    """2D rotary for patches at (rows, cols) (N,) -> cos, sin (N, head_dim) in fp32.

    head_dim/4 frequencies rotate by row, the same ones by column; the (row, col) angle
    vector is repeated for the two halves that rotate_half pairs up.
    """
    half = head_dim // 2
    inv_freq = 1.0 / (theta ** (torch.arange(0, half, 2, dtype=torch.float,
                                             device=rows.device) / half))
    ang = torch.cat([rows[:, None].float() * inv_freq, cols[:, None].float() * inv_freq], -1)
    ang = torch.cat([ang, ang], dim=-1)  # (N, head_dim)
    return ang.cos(), ang.sin()


def frame_seqlens(grids: list[tuple[int, int, int]], device) -> tuple[torch.Tensor, int]:
    """cu_seqlens (frames + 1,) int32 and the longest length: attention within each frame."""
    lens = [h * w for t, h, w in grids for _ in range(t)]
    cu = torch.tensor([0, *lens], device=device, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    return cu, max(lens)


def _axis_taps(index: torch.Tensor, size: int, side: int):
    """Bilinear (align_corners=True) taps and weights along one axis: (n, 2) each."""
    src = index.float() * (side - 1) / max(size - 1, 1)
    lo = torch.floor(src)
    offs = torch.arange(2, device=index.device)
    taps = (lo.long()[:, None] + offs).clamp(0, side - 1)
    weights = (1 - (src[:, None] - lo[:, None] - offs).abs()).clamp(min=0)
    return taps, weights
