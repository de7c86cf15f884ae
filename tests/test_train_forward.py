"""The training forward of our model (vlm/train_forward.py) against transformers: the loss
and the gradient of every parameter on the same tiny checkpoint and sample, fp32, for all
three families; the MoE auxiliary loss; gradient checkpointing changes nothing."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_checkpoints import tiny_checkpoint, tiny_family_checkpoint
from tests.train_fixtures import load_ours, make_sample
from tests.vlm_parity_checks import full_frames
from train.pack import pack_row
from vlm.train_forward import (
    load_balancing_loss,
    packed_hidden,
    packed_loss,
    set_gradient_checkpointing,
)
from vlm.weights import rename

TOL = 1e-4


def checkpoint_for(family: str):
    return tiny_checkpoint() if family == "qwen3_vl_moe" else tiny_family_checkpoint(family)


def row_loss(model, row):
    out = packed_loss(model, row.input_ids, row.positions, row.cu_seqlens, row.max_seqlen,
                      row.labels, row.pixels, row.grids)
    return out.loss_sum / out.target_tokens


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("family", ["qwen3_vl_moe", "qwen3_vl", "qwen2_5_vl"])
def test_loss_and_every_gradient_equal_transformers(family):
    folder, hf = checkpoint_for(family)
    model, cfg, processor = load_ours(folder)
    sample = make_sample(processor, [(100, 70), (64, 90)], "open the settings",
                         "Thought: The gear.\nAction: click(start_box='(10,20)')",
                         history_reply="Thought: Look first.\nAction: wait()")
    row = pack_row([sample], cfg.image_token_id, cfg.vision.spatial_merge_size)
    for p in model.parameters():
        p.requires_grad_(True)
    loss = row_loss(model, row)
    loss.backward()

    ids = torch.tensor([sample.input_ids])
    hf.zero_grad()
    ref = hf(input_ids=ids, pixel_values=full_frames_for(cfg, row.pixels),
             image_grid_thw=torch.tensor(row.grids),
             mm_token_type_ids=(ids == cfg.image_token_id).int(),
             labels=torch.tensor([sample.labels]))
    ref.loss.backward()
    assert relative(loss.detach(), ref.loss.detach()) <= 1e-5

    ours = dict(model.named_parameters())
    checked = 0
    for name, p in hf.named_parameters():
        mine = ours[rename(name)]
        assert mine.grad is not None, f"no gradient for {name}"
        want = p.grad if p.grad.shape == mine.shape else p.grad.transpose(1, 2)
        if want.norm() == 0:
            assert mine.grad.norm() == 0, name
            continue
        assert relative(mine.grad, want) <= TOL, name
        checked += 1
    assert checked > 0.9 * len(ours)  # the experts and the vision tower included


class _Cfg:
    def __init__(self, cfg):
        self.cfg = cfg


def full_frames_for(cfg, pixels):
    return full_frames(_Cfg(cfg), pixels)


def test_router_aux_loss_equals_transformers():
    from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import load_balancing_loss_func

    folder, _ = tiny_checkpoint()
    model, cfg, processor = load_ours(folder)
    sample = make_sample(processor, [(64, 64)], "scroll down", "Thought: ok\nAction: wait()")
    row = pack_row([sample], cfg.image_token_id, cfg.vision.spatial_merge_size)
    with torch.no_grad():
        _, logits = packed_hidden(model, row.input_ids, row.positions, row.cu_seqlens,
                                  row.max_seqlen, row.pixels, row.grids)
    assert len(logits) == 2  # layers 0 and 1 are MoE, layer 2 is dense (mlp_only_layers)
    ours = load_balancing_loss(logits, cfg.text.num_experts_per_tok)
    ref = load_balancing_loss_func(tuple(logits), cfg.text.num_experts,
                                   cfg.text.num_experts_per_tok)
    assert relative(ours, ref) <= 1e-6 and ours > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    folder, _ = tiny_checkpoint()
    model, cfg, processor = load_ours(folder)
    sample = make_sample(processor, [(64, 96)], "type hello", "Thought: t\nAction: type()")
    row = pack_row([sample], cfg.image_token_id, cfg.vision.spatial_merge_size)
    for p in model.parameters():
        p.requires_grad_(True)
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        set_gradient_checkpointing(model, enabled)
        row_loss(model, row).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-5, atol=1e-7, msg=name)
