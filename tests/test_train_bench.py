"""`deskpilot bench train` on the tiny architecture: the command runs and writes its JSON,
packed and padded train on the same real tokens, padding computes pad tokens, gradient
checkpointing needs less activation memory, and the pieces it stands on (padded batches,
the CPU live-tensor counter, the agent-step mix) do what they say. No timing is asserted."""

from __future__ import annotations

import json

import pytest
import torch

from app.cli import main as cli
from tests.tiny_checkpoints import tiny_checkpoint
from tests.train_fixtures import load_ours, make_sample
from train.bench_memory import LiveTensorBytes
from train.bench_mix import Mix, agent_step_samples
from train.data import IGNORE
from train.pack import pack_row
from train.pad import pad_batch, padded_batches
from vlm.train_forward import packed_loss


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One small run shared by the tests that read its output (a run costs several steps)."""
    out = tmp_path_factory.mktemp("bench-train") / "train.json"
    argv = ["bench", "train", "--config", "tiny", "--device", "cpu", "--samples", "2",
            "--pack-tokens", "8192", "--repeat", "1", "--json", str(out)]
    rc = cli(argv)
    return rc, json.loads(out.read_text())


def test_the_command_writes_the_json_with_its_keys(bench_run, capsys):
    rc, res = bench_run
    assert rc == 0
    assert res["command"] == ("deskpilot bench train --config tiny --device cpu --samples 2 "
                              "--pack-tokens 8192 --repeat 1 --json " + res["command"].split()[-1])
    for key in ("device", "torch", "date", "commit", "config", "mix", "padded_means",
                "modes", "packed_over_padded", "memory"):
        assert key in res, key
    assert res["mix"]["samples"] == 2 and "built" in res["mix"]
    for mode in ("packed", "padded"):
        m = res["modes"][mode]
        assert set(m["tokens_per_s"]) == {"min", "median", "max"}
        assert m["tokens_per_s"]["min"] > 0
        assert 0 <= m["padded_token_fraction"] < 1
    assert res["modes"]["packed"]["pad_tokens"] == 0


def test_packed_and_padded_train_on_the_same_real_tokens(bench_run):
    _, res = bench_run
    packed, padded = res["modes"]["packed"], res["modes"]["padded"]
    assert packed["real_tokens"] == padded["real_tokens"] == res["mix"]["tokens"]
    assert packed["samples"] == padded["samples"] == 2


def test_padding_a_mixed_length_batch_computes_pad_tokens(bench_run):
    _, res = bench_run
    lengths = res["mix"]["sample_tokens"]
    assert lengths["min"] < lengths["max"]  # the mix has different lengths...
    padded = res["modes"]["padded"]
    assert padded["steps"] == 1 and padded["samples_per_step"] == 2  # ...in one batch
    assert padded["pad_tokens"] > 0
    assert padded["computed_tokens"] == padded["real_tokens"] + padded["pad_tokens"]


def test_checkpointing_needs_less_activation_memory(bench_run):
    _, res = bench_run
    mem = res["memory"]
    without = mem["without_checkpointing"]["activation_mib"]
    with_ = mem["with_checkpointing"]["activation_mib"]
    assert 0 < with_ < without
    assert mem["checkpointing_activation_ratio"] == pytest.approx(with_ / without, abs=1e-3)


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit) as exc:
        cli(["bench", "train", "--config", "tiny", "--samples", "0"])
    assert exc.value.code == 2
    assert "--samples must be >= 1" in capsys.readouterr().err


def test_a_padded_batch_has_the_packed_rows_loss():
    """Right padding under causal attention hides the pads from every real token, so a
    padded batch's loss is its samples' summed loss: the same as packing them."""
    folder, _ = tiny_checkpoint()
    model, cfg, processor = load_ours(folder)
    samples = [
        make_sample(processor, [(64, 64)], "open files", "Thought: a\nAction: click()", 1),
        make_sample(processor, [(96, 64), (64, 64)], "close it",
                    "Thought: bb\nAction: hotkey(key='alt f4')", 2, history_reply="wait()"),
    ]
    merge = cfg.vision.spatial_merge_size
    packed = pack_row(samples, cfg.image_token_id, merge)
    pad_id = processor.tokenizer.pad_token_id
    padded = pad_batch(samples, pad_id, cfg.image_token_id, merge)
    longest = max(len(s) for s in samples)
    assert padded.num_tokens == 2 * longest > packed.num_tokens
    assert int((padded.input_ids == pad_id).sum()) >= 2 * longest - packed.num_tokens
    assert padded.cu_seqlens.tolist() == [0, longest, 2 * longest]
    assert padded.target_tokens == packed.target_tokens

    def loss(row):
        return float(packed_loss(model, row.input_ids, row.positions, row.cu_seqlens,
                                 row.max_seqlen, row.labels, row.pixels, row.grids).loss_sum)

    with torch.no_grad():
        want, got = loss(packed), loss(padded)
    assert abs(got - want) <= 1e-5 * abs(want)


def test_padded_batches_keep_the_order():
    assert padded_batches(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="batch_size"):
        padded_batches(["a"], 0)


def test_live_tensor_bytes_counts_what_autograd_keeps_until_it_is_freed():
    w = torch.randn(256, 256, requires_grad=True)
    mib = 2**20
    with LiveTensorBytes() as counter:
        x = torch.randn(1024, 256)  # 1 MiB
        y = (x @ w).relu()  # x @ w (1 MiB) is freed: relu keeps only its own output
        assert counter.live == 2 * mib
        y.sum().backward()
        del x, y
        assert counter.live == w.numel() * 4  # only the gradient of w is left
    assert counter.peak >= 3 * mib


def bench_processor(folder):
    """The processor `bench train --config tiny` uses: its synthetic folder and tokenizer."""
    from train.bench import prose_tokenizer
    from vlm.bench import synthetic_folder
    from vlm.processor import ImageSettings, Processor
    from vlm.weights import read_config

    synthetic_folder("tiny", folder)
    prose_tokenizer(folder)
    cfg = read_config(folder)
    return Processor(folder, cfg.image_token_id, ImageSettings.for_model(cfg))


def test_the_mix_is_agent_steps_with_one_to_five_screenshots(tmp_path):
    processor = bench_processor(tmp_path)
    mix = Mix(screens=((320, 200),), max_pixels=(8 * 32 * 32,), episode_steps=(7, 7))
    samples = agent_step_samples(7, mix, "qwen3-vl", processor, seed=3)
    shots = sorted(len(s.images) for s in samples)
    assert shots == [1, 2, 3, 4, 5, 5, 5]  # one episode of 7 steps, history_n = 5
    for s in samples:
        assert 20 <= s.target_tokens <= 60
        assert s.labels[-s.target_tokens:] == s.input_ids[-s.target_tokens:]
        assert all(t == IGNORE for t in s.labels[:-s.target_tokens])
