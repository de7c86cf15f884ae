"""Packing without padding: rows respect --pack-tokens, positions restart per sample, the
images of a row go through one vision call, and a packed row's loss and gradients equal the
sum over its samples computed one by one (fp32, <= 1e-5 relative)."""

from __future__ import annotations

import pytest

from tests.tiny_checkpoints import tiny_checkpoint
from tests.train_fixtures import load_ours, make_sample
from train.data import IGNORE, DataError, Sample
from train.pack import assign_rows, pack, pack_row
from vlm.train_forward import packed_loss


def loss_sum(model, row):
    return packed_loss(model, row.input_ids, row.positions, row.cu_seqlens, row.max_seqlen,
                       row.labels, row.pixels, row.grids).loss_sum


def test_rows_fill_greedily_within_the_limit():
    rows = assign_rows([5, 9, 3, 7, 2], 10)
    assert sorted(i for r in rows for i in r) == [0, 1, 2, 3, 4]
    assert all(sum([5, 9, 3, 7, 2][i] for i in r) <= 10 for r in rows)
    assert len(rows) == 3  # 26 tokens need at least 3 rows of 10


def test_too_long_a_sample_is_an_error_naming_it():
    s = Sample("run-a step 4", list(range(50)), [IGNORE] * 49 + [1])
    with pytest.raises(DataError, match="run-a step 4: 50 tokens.*--pack-tokens 20"):
        pack([s], 20, image_token_id=99, merge_size=2)


def test_packed_loss_and_gradients_equal_the_sum_over_samples():
    folder, _ = tiny_checkpoint()
    model, cfg, processor = load_ours(folder)
    for p in model.parameters():
        p.requires_grad_(True)
    samples = [
        make_sample(processor, [(64, 64)], "open files", "Thought: a\nAction: click()", 1),
        make_sample(processor, [(96, 64), (64, 64)], "close it",
                    "Thought: bb\nAction: hotkey(key='alt f4')", 2, history_reply="wait()"),
        make_sample(processor, [(64, 128)], "scroll", "Thought: c\nAction: scroll()", 3),
    ]
    limit = sum(len(s) for s in samples)
    (row,) = pack(samples, limit, cfg.image_token_id, cfg.vision.spatial_merge_size)
    assert row.num_tokens == limit and len(row.grids) == 4
    starts = row.cu_seqlens.tolist()[:-1]
    assert all(int(row.positions[:, s].max()) == 0 for s in starts)  # restart per sample
    assert row.target_tokens == sum(s.target_tokens for s in samples)  # shifted, none lost

    model.zero_grad()
    packed = loss_sum(model, row)
    packed.backward()
    packed_grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    total = 0.0
    for s in samples:
        one = pack_row([s], cfg.image_token_id, cfg.vision.spatial_merge_size)
        part = loss_sum(model, one)
        part.backward()
        total += float(part.detach())
    assert abs(float(packed) - total) <= 1e-5 * total
    for name, p in model.named_parameters():
        want = p.grad
        if want.norm() == 0:
            continue
        rel = float((packed_grads[name] - want).norm() / want.norm())
        assert rel <= 1e-5, f"{name}: {rel}"
