"""Packing without padding (rmpad): samples -> rows of at most `pack_tokens` tokens.

A row is one flat token stream: the samples' tokens back to back, `cu_seqlens` marking
where each starts (attention is block-diagonal causal: a token sees only earlier tokens of
its own sample), MRoPE positions restarting at 0 for every sample (as if it were alone),
and every image of the row packed NaViT-style into one ViT call (each image attends only
within itself, through the vision tower's own per-frame cu_seqlens). No pad token is ever
computed, so a row's loss is exactly the sum of its samples' losses.

Rows are filled greedily, longest sample first, each into the first row with room
(first-fit decreasing): few rows, deterministic for the same samples.

Shapes: T tokens of a row, N patches of its images, K values per patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from train.data import IGNORE, DataError, Sample


@dataclass
class PackedRow:
    input_ids: torch.Tensor  # (T,) long
    labels: torch.Tensor  # (T,) long, IGNORE where not trained; already shifted: see below
    positions: torch.Tensor  # (3, T) long, restarting per sample
    cu_seqlens: torch.Tensor  # (samples + 1,) int32 token offsets of the samples
    max_seqlen: int  # longest sample
    pixels: torch.Tensor | None  # (N, K) float32, every image of the row
    grids: list[tuple[int, int, int]]  # one (t, h, w) per image, in token order
    sources: list[str]  # the samples' sources, in order

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())

    def to(self, device) -> PackedRow:
        return PackedRow(
            self.input_ids.to(device), self.labels.to(device), self.positions.to(device),
            self.cu_seqlens.to(device), self.max_seqlen,
            None if self.pixels is None else self.pixels.to(device), self.grids, self.sources)


def next_token_labels(labels: list[int]) -> list[int]:
    """Position p is trained to predict token p+1: shift left within ONE sample, so no
    sample's last position predicts the next sample's first token."""
    return [*labels[1:], IGNORE]


def assign_rows(lengths: list[int], pack_tokens: int) -> list[list[int]]:
    """Sample indices per row: first-fit decreasing into rows of at most pack_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(pack_tokens - lengths[i])
    return [sorted(r) for r in rows]  # samples keep their input order inside a row


class PackedRows:
    """The rows of a packing, built when asked for: each row's flat tensors (its images'
    patches concatenated) exist only while it trains, not for the whole data set at once."""

    def __init__(self, samples: list[Sample], assignment: list[list[int]],
                 image_token_id: int, merge_size: int):
        self.samples, self.assignment = samples, assignment
        self.image_token_id, self.merge_size = image_token_id, merge_size

    def __len__(self) -> int:
        return len(self.assignment)

    def __getitem__(self, i: int) -> PackedRow:
        return pack_row([self.samples[j] for j in self.assignment[i]], self.image_token_id,
                        self.merge_size)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def pack(samples: list[Sample], pack_tokens: int, image_token_id: int,
         merge_size: int) -> PackedRows:
    """Samples -> packed rows. A sample longer than `pack_tokens` is an error naming it."""
    if pack_tokens < 1:
        raise ValueError(f"pack_tokens must be >= 1, got {pack_tokens}")
    too_long = [s for s in samples if len(s) > pack_tokens]
    if too_long:
        worst = max(too_long, key=len)
        raise DataError(f"{worst.source}: {len(worst)} tokens, more than --pack-tokens "
                        f"{pack_tokens} ({len(too_long)} sample(s) too long); raise "
                        f"--pack-tokens to at least {len(worst)} or lower the screenshots' "
                        "max_pixels")
    rows = assign_rows([len(s) for s in samples], pack_tokens)
    return PackedRows(samples, rows, image_token_id, merge_size)


def pack_row(samples: list[Sample], image_token_id: int, merge_size: int) -> PackedRow:
    from vlm.model import rope_index

    ids, labels, positions, lens, pixels, grids = [], [], [], [], [], []
    for s in samples:
        sample_grids = [img.grid for img in s.images]
        pos, _ = rope_index(s.input_ids, sample_grids, image_token_id, merge_size)
        ids += s.input_ids
        labels += next_token_labels(s.labels)
        positions.append(pos)
        lens.append(len(s))
        pixels += [img.pixels for img in s.images]
        grids += sample_grids
    cu = torch.tensor([0, *lens], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    return PackedRow(
        input_ids=torch.tensor(ids, dtype=torch.long),
        labels=torch.tensor(labels, dtype=torch.long),
        positions=torch.cat(positions, dim=1),
        cu_seqlens=cu,
        max_seqlen=max(lens),
        pixels=torch.cat(pixels) if pixels else None,
        grids=grids,
        sources=[s.source for s in samples],
    )
