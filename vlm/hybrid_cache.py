"""The cache of a hybrid (Gated DeltaNet + attention) decoder, with resumable snapshots.

Attention layers keep K/V rows in a `KVCache` (any prefix of them stays valid). DeltaNet
layers keep one recurrent state (Hv, Dk, Dv) and one convolution state (C, K-1) per layer,
fp32: the whole history folded into a fixed size, so unlike K/V it cannot be cut back to a
shorter prefix. Prefix reuse between agent steps therefore resumes only where the states
are known:
- live: the states after the last forward (end of the previous reply, which the next
  prompt of an append-only conversation repeats);
- snapshots: copies taken at the end of each prefill forward, the most recent
  `max_snapshots` of them: the end of each previous prompt, and (the engine splits the
  prefill there, see `prefill_split_at_turn`) the start of its reply header.
`resume(n)` picks the longest of these at or before the reusable prefix n, restores it and
returns its length; when the prompt diverges earlier than every one (an old screenshot
dropped), it returns 0 and the prompt is recomputed. Taking a snapshot costs one copy of
the states (Qwen3.5-35B-A3B: 30 layers x 32 x 128 x 128 fp32 = 63 MB), none of the K/V.

A decode step (qwen3_5.HybridTextModel.decode) advances the states on the device where
the host cannot see it, so whoever runs decode steps brackets them with `begin(slot)` and
`end(slot + steps, snapshot=False)` (the engine does, around each reply); a reply that
fails half-way leaves `live` None, and the next prompt resumes from a snapshot.

Interface as `KVCache` for the rest of vlm: `update`, `write_token`, `k`/`v`, `reserve`,
`capacity`, `length`.
Shapes: Lk attention layers, Ll DeltaNet layers, S cached rows, C capacity.
"""

from __future__ import annotations

import torch

from vlm.cache import KVCache
from vlm.config import TextConfig


class HybridCache:
    def __init__(self, cfg: TextConfig, capacity: int, dtype: torch.dtype,
                 device: torch.device | str, max_snapshots: int = 6):
        n = cfg.num_hidden_layers
        attn = [i for i in range(n) if not cfg.is_linear_layer(i)]
        linear = [i for i in range(n) if cfg.is_linear_layer(i)]
        self.kv_slot = {layer: j for j, layer in enumerate(attn)}  # model layer -> K/V row
        self.state_slot = {layer: j for j, layer in enumerate(linear)}
        self.kv = KVCache(max(len(attn), 1), cfg.num_key_value_heads, cfg.head_dim, capacity,
                          dtype, device)
        conv_dim = (2 * cfg.linear_num_key_heads * cfg.linear_key_head_dim
                    + cfg.linear_num_value_heads * cfg.linear_value_head_dim)
        # (Ll, 1 sequence, ...): the layers take (N, ...) state batches
        self.recurrent = torch.zeros(len(linear), 1, cfg.linear_num_value_heads,
                                     cfg.linear_key_head_dim, cfg.linear_value_head_dim,
                                     dtype=torch.float32, device=device)
        self.conv = torch.zeros(len(linear), 1, conv_dim, cfg.linear_conv_kernel_dim - 1,
                                dtype=torch.float32, device=device)
        self.max_snapshots = max_snapshots
        self.snapshots: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # length -> states
        self.live: int | None = 0  # length the states are at; None while a forward runs

    # -- KVCache's interface --------------------------------------------------------------

    @property
    def length(self) -> int:
        return self.kv.length

    @length.setter
    def length(self, value: int) -> None:
        self.kv.length = value

    @property
    def capacity(self) -> int:
        return self.kv.capacity

    @property
    def dtype(self) -> torch.dtype:
        return self.kv.dtype

    @property
    def device(self) -> torch.device:
        return self.kv.device

    def reserve(self, needed: int) -> None:
        self.kv.reserve(needed)

    @property
    def k(self) -> torch.Tensor:
        """(Lk, Hkv, C, D) keys: the buffer a compiled or captured decode step is bound to."""
        return self.kv.k

    @property
    def v(self) -> torch.Tensor:
        return self.kv.v

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor):
        return self.kv.update(self.kv_slot[layer], start, k, v)

    def write_token(self, layer: int, slot: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Attention `layer`'s k/v (1, Hkv, D) at device row `slot` ((1,) long) -> its full
        (Hkv, C, D) key and value buffers (KVCache.write_token)."""
        return self.kv.write_token(self.kv_slot[layer], slot, k, v)

    # -- DeltaNet states ------------------------------------------------------------------

    def linear_state(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(recurrent (1, Hv, Dk, Dv), conv (1, C, K-1)) of DeltaNet `layer`, to update in
        place."""
        j = self.state_slot[layer]
        return self.recurrent[j], self.conv[j]

    def begin(self, start: int) -> None:
        """A forward continues the states at `start`: they must be exactly there."""
        if self.live != start:
            raise RuntimeError(f"hybrid cache states are at {self.live}, a forward asked to "
                               f"continue at {start}: call resume() first")
        self.live = None  # if the forward fails half-way, no layer's state can be trusted

    def end(self, length: int, snapshot: bool) -> None:
        self.live = length
        if snapshot:
            self.snapshots[length] = (self.recurrent.clone(), self.conv.clone())
            while len(self.snapshots) > self.max_snapshots:
                del self.snapshots[min(self.snapshots)]

    def resume(self, n: int) -> int:
        """Make the states those after the first `m` tokens for the largest known m <= n
        (the live state, a snapshot, or 0: zeros); returns m. Snapshots past m are dropped
        (the rows after m are about to be rewritten)."""
        if self.live is not None and self.live == n:
            m = n
        else:
            known = [p for p in self.snapshots if p <= n]
            m = max(known, default=0)
            if m:
                rec, conv = self.snapshots[m]
                self.recurrent.copy_(rec)
                self.conv.copy_(conv)
            else:
                self.recurrent.zero_()
                self.conv.zero_()
        for p in [p for p in self.snapshots if p > m]:
            del self.snapshots[p]
        self.live = m
        return m


def prefill_split_at_turn(model, cache: HybridCache, ids: list[int], positions: torch.Tensor,
                          start: int, image_embeds, deepstack, turn_start: int | None):
    """Prefill ids[start:] (positions (3, len(ids)) on the model's device) -> last logits,
    in two forwards split before the last `turn_start` token (Qwen's `<|im_start|>`: the
    header of the reply about to be generated), so a snapshot is kept there too.

    Why: chat templates may render a reply differently once it is history (Qwen3.5's drops
    the <think> text), so the next prompt can diverge right after that header, before the
    end-of-prompt snapshot; the state before the header is still shared. Without a split
    point (no such token after `start`, or image tokens after it) it is one forward."""
    from vlm.generate import prefill

    device = positions.device
    split = None
    if turn_start is not None:
        tail = [i for i in range(len(ids) - 1, start, -1) if ids[i] == turn_start]
        image_id = getattr(getattr(model, "cfg", None), "image_token_id", None)
        if tail and image_id not in ids[tail[0]:]:
            split = tail[0]
    if split is None:
        return prefill(model, cache, torch.tensor(ids[start:], device=device),
                       positions[:, start:], start, image_embeds, deepstack)
    prefill(model, cache, torch.tensor(ids[start:split], device=device),
            positions[:, start:split], start, image_embeds, deepstack)
    return prefill(model, cache, torch.tensor(ids[split:], device=device), positions[:, split:],
                   split)
