"""Padded batches: the baseline that packing (train/pack.py) replaces, for `bench train`.

A padded batch pads every sample to the batch's longest with the pad token, as a trainer
without packing does (transformers' collators, `padding="longest"`). It is laid out as one
flat stream of B x L tokens (B samples, L the longest) with `cu_seqlens` at every L, so it
runs through exactly the training forward packed rows take (vlm.train_forward.packed_loss)
and the only difference between the two is the padding:

- every pad token is computed: embedded, through every layer's attention, MLP or MoE (the
  router routes it), as in a (B, L) batch;
- the attention mask is the batch's key-padding mask: padding is on the right and attention
  is causal within each sample's L-token segment, so a real token never sees a pad (a pad
  query sees the real tokens before it and earlier pads; its output is never used);
- pads are labelled IGNORE, so the loss is exactly the sum of the samples' losses — the
  same number a packed row of the same samples gives.
Images are not padded: a (B, L) trainer flattens the batch's patches into one ViT call too.
"""

from __future__ import annotations

from train.data import IGNORE, Sample
from train.pack import PackedRow, pack_row


def padded(sample: Sample, length: int, pad_id: int) -> Sample:
    """`sample` right-padded to `length` tokens with `pad_id`, the pads labelled IGNORE."""
    extra = length - len(sample)
    if extra < 0:
        raise ValueError(f"{sample.source}: {len(sample)} tokens, longer than the batch's "
                         f"padded length {length}")
    return Sample(sample.source, sample.input_ids + [pad_id] * extra,
                  sample.labels + [IGNORE] * extra, sample.images)


def pad_batch(samples: list[Sample], pad_id: int, image_token_id: int,
              merge_size: int) -> PackedRow:
    """A padded batch of `samples` as a row: B segments of the longest sample's length."""
    if not samples:
        raise ValueError("a padded batch needs at least one sample")
    longest = max(len(s) for s in samples)
    return pack_row([padded(s, longest, pad_id) for s in samples], image_token_id, merge_size)


def padded_batches(samples: list[Sample], batch_size: int) -> list[list[Sample]]:
    """The samples in their order, `batch_size` to a batch (the last one may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [samples[i:i + batch_size] for i in range(0, len(samples), batch_size)]
