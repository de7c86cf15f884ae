"""DPO: the loss on hand-computed values, a pair's log-probs as the model computes them,
training on a pair raises its margin (the LoRA reference stays the base), pairs from scores,
and `deskpilot train dpo` end to end on a tiny checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

from app import cli
from tests.tiny_checkpoints import tiny_family_checkpoint
from tests.train_fixtures import load_ours, make_sample
from tests.vlm_parity_checks import noise_image
from train import lora as L
from train.data import DataError
from train.dpo import dpo_loss, reference_logps, sequence_logps, train_dpo
from train.dpo_data import make_pair, pair_from_scores, read_pairs_jsonl
from train.loop import LoopConfig
from train.pack import pack_row
from vlm.train_forward import packed_loss

CHOSEN = "Thought: Open the menu.\nAction: click(start_box='(10,20)')"
REJECTED = "Thought: Ask.\nAction: call_user()"


def test_loss_on_hand_computed_values():
    pc, pr = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.0])
    loss, margin = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 0: 0.5 * ((-1 + 1.5) - (-2 + 1.5)) = 0.5; pair 1: 0.5 * ((-3 + 2) - (-1 + 2)) = -1
    assert margin.tolist() == pytest.approx([0.5, -1.0])
    assert loss.tolist() == pytest.approx([math.log1p(math.exp(-0.5)),
                                           math.log1p(math.exp(1.0))], rel=1e-6)
    # equal policy and reference: log 2 whatever beta
    zero, _ = dpo_loss(pc, pr, pc, pr, beta=3.0)
    assert zero.tolist() == pytest.approx([math.log(2)] * 2)


def tiny_pair_row():
    folder, _ = tiny_family_checkpoint("qwen2_5_vl")
    model, cfg, processor = load_ours(folder)
    chosen = make_sample(processor, [(56, 56)], "open the menu", CHOSEN, seed=1)
    rejected = make_sample(processor, [(56, 56)], "open the menu", REJECTED, seed=1)
    return model, cfg, pack_row([chosen, rejected], cfg.image_token_id, 2), (chosen, rejected)


def test_sequence_logps_are_the_samples_own_log_likelihoods():
    model, cfg, row, samples = tiny_pair_row()
    with torch.no_grad():
        logps = sequence_logps(model, row)
        for k, sample in enumerate(samples):
            alone = pack_row([sample], cfg.image_token_id, 2)
            nll = packed_loss(model, alone.input_ids, alone.positions, alone.cu_seqlens,
                              alone.max_seqlen, alone.labels, alone.pixels, alone.grids)
            assert float(logps[k]) == pytest.approx(-float(nll.loss_sum), rel=1e-5)


def test_training_on_a_pair_raises_its_margin_and_keeps_the_base_as_reference(tmp_path):
    model, _, row, _ = tiny_pair_row()
    torch.manual_seed(0)
    L.setup_lora(model, L.lora_config(4, 8.0, 0.0, False))
    with torch.no_grad():  # LoRA's B starts at zero: perturb it so "disabled" is visible
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    ref = reference_logps(model, [row], torch.device("cpu"))
    cfg = LoopConfig(steps=8, lr=5e-3, save_every=0)
    records = train_dpo(model, [row], ref, cfg, 0.1, tmp_path, device=torch.device("cpu"))
    assert records[-1]["margin"] > records[0]["margin"] + 0.05
    assert records[-1]["loss"] < records[0]["loss"]
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    with torch.no_grad():
        policy = sequence_logps(model, row)
    assert float(policy[0] - policy[1]) > float(ref[0, 0] - ref[0, 1])
    # the reference is the base: trained adapters disabled give the same log-probs
    assert torch.allclose(reference_logps(model, [row], torch.device("cpu")), ref, atol=1e-5)


def test_resume_continues_exactly(tmp_path):
    model, _, row, _ = tiny_pair_row()
    torch.manual_seed(0)
    L.setup_lora(model, L.lora_config(4, 8.0, 0.1, False))  # dropout: the RNG must resume
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    ref = reference_logps(model, [row], torch.device("cpu"))
    cpu = torch.device("cpu")
    flat = dict(lr=5e-3, min_lr_ratio=1.0)  # a constant lr: 2 + 2 steps == 4 steps

    def restart():
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in initial:
                    p.copy_(initial[n])

    whole = train_dpo(model, [row], ref, LoopConfig(steps=4, **flat), 0.1, tmp_path / "a",
                      device=cpu)
    restart()
    train_dpo(model, [row], ref, LoopConfig(steps=2, **flat), 0.1, tmp_path / "b", device=cpu)
    restart()  # the checkpoint, not the model in memory, must carry the state
    rest = train_dpo(model, [row], ref, LoopConfig(steps=4, **flat), 0.1, tmp_path / "b",
                     device=cpu, resume=True)
    assert [r["step"] for r in rest] == [3, 4]
    assert [r["loss"] for r in rest] == [r["loss"] for r in whole[2:]]


def test_pairs_from_scores_and_bad_pairs():
    prompt = [{"role": "user", "content": "do it"}]
    pair = pair_from_scores(prompt, ["a", "b", "c"], [0.5, 1.0, 0.0])
    assert (pair.chosen, pair.rejected) == ("b", "c")
    assert pair_from_scores(prompt, ["a", "b"], [1.0, 1.0]) is None
    with pytest.raises(DataError, match="same reply"):
        make_pair(prompt, "a", "a")
    with pytest.raises(DataError, match="end with a user"):
        make_pair([{"role": "assistant", "content": "x"}], "a", "b")


def test_sampled_and_scored_pairs_train_in_memory(tmp_path, settings_dir):
    """The embedded-model path: replies sampled for a prompt with a PIL screenshot, scored,
    then trained on without a file."""
    from train.dpo import DpoOptions, run_dpo

    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    prompt = [{"role": "user", "content": [{"type": "text", "text": "open the menu"},
                                           {"type": "image", "image": noise_image(56, 56, 5)}]}]
    pair = pair_from_scores(prompt, [REJECTED, CHOSEN], [0.0, 1.0], source="rollout 0")
    opts = DpoOptions(inputs=[], base=str(base), out=str(tmp_path / "out"), lora_rank=4,
                      steps=2, device="cpu", save_every=0)
    summary = run_dpo(opts, pairs=[pair])
    assert summary["pairs"] == 1 and summary["steps"] == 2
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def write_pairs(tmp_path, n=2) -> object:
    noise_image(56, 56, 3).save(tmp_path / "shot.png")
    lines = [{"messages": [{"role": "system", "content": "You are a GUI agent."},
                           {"role": "user", "content": [
                               {"type": "text", "text": f"task {k}"},
                               {"type": "image", "image": "shot.png"}]}],
              "chosen": CHOSEN, "rejected": {"role": "assistant", "content": REJECTED}}
             for k in range(n)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_pairs_jsonl_errors_name_the_line(tmp_path):
    path = write_pairs(tmp_path)
    assert len(read_pairs_jsonl(path)) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text() + json.dumps({"messages": [], "chosen": "a"}) + "\n")
    with pytest.raises(DataError, match="line 3.*'rejected'"):
        read_pairs_jsonl(bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(path.read_text().replace("shot.png", "nope.png"))
    with pytest.raises(DataError, match="nope.png does not exist"):
        read_pairs_jsonl(missing)


@pytest.fixture
def settings_dir(tmp_path, monkeypatch):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "settings.json").write_text(json.dumps({"runs_dir": str(tmp_path / "runs")}))
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(cfg))
    return cfg


@pytest.mark.slow
def test_cli_writes_the_outputs(tmp_path, settings_dir, capsys):
    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    pairs = write_pairs(tmp_path)
    out = tmp_path / "out"
    code = cli.main(["train", "dpo", str(pairs), "--base", str(base), "--out", str(out),
                     "--lora-rank", "4", "--merge", "--beta", "0.2", "--steps", "3",
                     "--lr", "1e-3", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "merged" / "config.json").is_file()
    assert list((out / "merged").glob("*.safetensors"))
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3
    assert {"step", "loss", "lr", "tokens_per_s", "peak_memory_mb", "margin"} <= set(log[0])
    assert log[0]["loss"] == pytest.approx(math.log(2), rel=1e-4)  # policy == reference
    args = json.loads((out / "train_args.json").read_text())
    assert args["beta"] == 0.2 and args["resolved"]["pairs"] == 2
    assert "2 pairs" in capsys.readouterr().out


def test_cli_bad_input_is_a_clear_error(tmp_path, settings_dir, capsys):
    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    code = cli.main(["train", "dpo", str(bad), "--base", str(base), "--out",
                     str(tmp_path / "o"), "--full", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.jsonl line 1" in err and "Traceback" not in err
    code = cli.main(["train", "dpo", str(bad), "--base", str(base), "--out",
                     str(tmp_path / "o"), "--full", "--beta", "0", "--device", "cpu"])
    assert code == 2 and "--beta" in capsys.readouterr().err
