"""The training loop: warmup + cosine, a run interrupted with Ctrl+C saves a checkpoint and
`resume` continues bit-for-bit (the same losses as an uninterrupted run), and training
lowers the loss."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_checkpoints import tiny_family_checkpoint
from tests.train_fixtures import load_ours, make_sample
from train import lora as L
from train.loop import CHECKPOINT, Interrupted, LoopConfig, lr_at, row_of, train
from train.pack import pack


def test_warmup_then_cosine_to_the_floor():
    cfg = LoopConfig(steps=10, lr=1.0, warmup=2, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(10)]
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert lrs[-1] > 0.1 and lr_at(10, cfg) == pytest.approx(0.1)


def test_every_row_once_per_epoch():
    assert sorted(row_of(c, 5, seed=3) for c in range(5)) == [0, 1, 2, 3, 4]
    assert sorted(row_of(c, 5, seed=3) for c in range(5, 10)) == [0, 1, 2, 3, 4]


def lora_model_and_rows():
    folder, _ = tiny_family_checkpoint("qwen2_5_vl")
    model, cfg, processor = load_ours(folder)
    torch.manual_seed(0)  # the adapters' initialisation (the recipe seeds it too)
    L.setup_lora(model, L.lora_config(4, 8.0, 0.1, False))  # dropout: the RNG must resume
    samples = [make_sample(processor, [(56, 56)], f"task {k}",
                           f"Thought: step {k}\nAction: click(start_box='({k},{k})')", k)
               for k in range(3)]
    longest = max(len(s) for s in samples)
    return model, pack(samples, longest, cfg.image_token_id, 2)


def test_interrupt_then_resume_gives_the_same_losses_as_one_run(tmp_path):
    cfg = LoopConfig(steps=4, lr=5e-3, warmup=1, accumulate=2, save_every=0, seed=1)
    model, rows = lora_model_and_rows()
    assert len(rows) == 3
    whole = [r["loss"] for r in train(model, rows, cfg, tmp_path / "a",
                                      device=torch.device("cpu"))]
    assert whole[-1] < whole[0]

    model, rows = lora_model_and_rows()

    def stop_after_three(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        train(model, rows, cfg, tmp_path / "b", device=torch.device("cpu"),
              on_step=stop_after_three)
    assert info.value.step == 2 and (tmp_path / "b" / CHECKPOINT).is_file()

    model, rows = lora_model_and_rows()  # a fresh process: nothing carried over in memory
    torch.manual_seed(12345)  # whatever the RNG did meanwhile, the checkpoint restores it
    rest = [r["loss"] for r in train(model, rows, cfg, tmp_path / "b",
                                     device=torch.device("cpu"), resume=True)]
    assert len(rest) == 2
    log = (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 4
    assert whole[2:] == rest  # bit-for-bit


def test_resume_without_a_checkpoint_says_so(tmp_path):
    model, rows = lora_model_and_rows()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(model, rows, LoopConfig(steps=1, lr=1e-3), tmp_path, device=torch.device("cpu"),
              resume=True)


def test_bf16_full_fine_tuning_keeps_fp32_masters_and_learns(tmp_path):
    folder, _ = tiny_family_checkpoint("qwen2_5_vl")
    model, cfg, processor = load_ours(folder, dtype=torch.bfloat16)
    L.setup_full(model, train_vision=False)
    assert not any(p.requires_grad for n, p in model.named_parameters()
                   if n.startswith("visual."))
    sample = make_sample(processor, [(56, 56)], "task", "Thought: a\nAction: wait()")
    rows = pack([sample], len(sample), cfg.image_token_id, 2)
    before = model.lm_head.weight.detach().clone()
    cfg_loop = LoopConfig(steps=4, lr=1e-2, dtype="bf16", save_every=0)
    losses = [r["loss"] for r in train(model, rows, cfg_loop, tmp_path,
                                       device=torch.device("cpu"))]
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert not torch.equal(model.lm_head.weight, before)
    assert losses[-1] < losses[0]
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert all(t.dtype == torch.float32 for t in state["weights"].values())  # the masters
