"""Static key/value cache for one sequence: fixed capacity, preallocated, head-major.

One (L, Hkv, C, D) buffer each for keys and values (C the capacity), head-major so each kv
head's rows are dense for attention. Two ways in:

- `update(layer, start, k, v)`: a prefill writes T rows at a host slot and reads back
  (S, Hkv, D) views of rows 0..S (S = start + T; prefill shapes vary per call anyway).
- `write_token(layer, slot, k, v)`: a decode step writes one row at a DEVICE slot tensor and
  reads back the whole (Hkv, C, D) buffers; attention masks rows past the slot. Nothing in a
  decode step depends on a host integer, so one traced or captured step serves every token.

Capacity only changes in `reserve`, which the engine calls between replies (before the
prefill, for the prompt plus the reply budget), rounded up to `CAPACITY_STEP` rows so a
conversation that grows by a few tokens reuses the same buffers (and the same compiled or
captured decode step). The engine treats a cache as: `reserve`, `capacity`, `length`; a
family with other per-layer state (a recurrent state) provides the same three.
"""

from __future__ import annotations

import torch

CAPACITY_STEP = 512  # rows; capacity is a multiple of this (one decode-graph bucket each)


def bucket(rows: int) -> int:
    """The capacity that holds `rows`: the next multiple of CAPACITY_STEP (at least one)."""
    return max(1, -(-rows // CAPACITY_STEP)) * CAPACITY_STEP


class KVCache:
    def __init__(self, layers: int, kv_heads: int, head_dim: int, capacity: int,
                 dtype: torch.dtype, device: torch.device | str):
        self.shape = (layers, kv_heads, head_dim)
        self.dtype, self.device = dtype, torch.device(device)
        self.k = torch.zeros(layers, kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.length = 0  # rows valid in every layer (host bookkeeping, set by the caller)

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reserve(self, needed: int) -> None:
        """Make room for `needed` rows, keeping the valid prefix. Call between replies only:
        a decode step holds on to the buffers it was traced or captured with."""
        if needed <= self.capacity:
            return
        new = bucket(needed)
        k = self.k.new_zeros(*self.k.shape[:2], new, self.k.shape[3])
        v = torch.zeros_like(k)
        k[:, :, : self.length] = self.k[:, :, : self.length]
        v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k, v

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor):
        """k/v (T, Hkv, D) written at rows start..start+T -> (S, Hkv, D) views of rows
        0..start+T."""
        end = start + k.shape[0]
        if end > self.capacity:
            raise ValueError(f"cache holds {self.capacity} rows; writing rows up to {end} "
                             "needs reserve() first")
        self.k[layer, :, start:end] = k.transpose(0, 1)
        self.v[layer, :, start:end] = v.transpose(0, 1)
        return self.k[layer, :, :end].transpose(0, 1), self.v[layer, :, :end].transpose(0, 1)

    def write_token(self, layer: int, slot: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """k/v (1, Hkv, D) written at row `slot` ((1,) long, on the cache's device) ->
        this layer's full (Hkv, C, D) key and value buffers."""
        kc, vc = self.k[layer], self.v[layer]
        kc.index_copy_(1, slot, k.transpose(0, 1))
        vc.index_copy_(1, slot, v.transpose(0, 1))
        return kc, vc
