"""train.plan: the memory accounting every caller shares, checked on published figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from train.plan import (
    ParameterCount,
    PlanError,
    count_from_config,
    count_parameters,
    plan_memory,
    read_config,
    weight_formats,
)

ROOT = Path(__file__).resolve().parents[1]
# Just enough of a decoder config for the activation and logits terms.
CONFIG = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
          "intermediate_size": 11008, "vocab_size": 32000}


def _training_state(plan) -> int:
    return plan.weights + plan.gradients + plan.optimizer


@pytest.mark.parametrize("params, published_bytes", [
    (7_000_000_000, 112e9),  # 7B, full fine-tuning, AdamW, bf16 + fp32 masters: ~112 GB
    (1_500_000_000, 24e9),  # ZeRO paper, §3.1: GPT-2 1.5B needs at least 24 GB
])
def test_mixed_precision_adam_is_16_bytes_per_parameter(params, published_bytes):
    plan = plan_memory(ParameterCount(text=params), CONFIG, mode="full", dtype="bf16")
    assert _training_state(plan) == pytest.approx(published_bytes, rel=1e-9)
    assert plan.trainable == params


def test_fp32_training_has_no_separate_master_copy():
    plan = plan_memory(ParameterCount(text=1000), CONFIG, mode="full", dtype="fp32")
    assert (plan.weights, plan.gradients, plan.optimizer) == (4000, 4000, 8000)


def test_lora_keeps_the_base_frozen_in_its_dtype():
    count = ParameterCount(text=7_000_000_000, lora_targets=[(4096, 4096)] * 128)
    plan = plan_memory(count, CONFIG, mode="lora", dtype="bf16", lora_rank=8)
    adapter = 128 * 8 * (4096 + 4096)
    assert plan.trainable == adapter
    assert plan.weights == 2 * 7_000_000_000 + 2 * adapter
    assert plan.optimizer == 12 * adapter and plan.gradients == 2 * adapter


def test_checkpointing_keeps_a_small_fraction_of_the_activations():
    plan = plan_memory(ParameterCount(text=10), CONFIG, mode="full", tokens=4096,
                       grad_checkpointing=True)
    assert plan.activations == plan.activations_with_checkpointing
    assert plan.activations_with_checkpointing <= 0.4 * plan.activations_without_checkpointing
    # fp32 logits and their gradient: 8 bytes per token per vocabulary entry
    assert plan.logits == 4096 * 32000 * 8


def test_sharding_divides_the_training_state():
    one = plan_memory(ParameterCount(text=10**9), CONFIG, mode="full")
    four = plan_memory(ParameterCount(text=10**9), CONFIG, mode="full", world_size=4)
    assert _training_state(four) == _training_state(one) // 4


def test_fits_against_the_available_memory():
    small = plan_memory(ParameterCount(text=10**6), CONFIG, mode="lora", tokens=128,
                        available_bytes=80 * 2**30)
    big = plan_memory(ParameterCount(text=7 * 10**9), CONFIG, mode="full",
                      available_bytes=80 * 2**30)
    assert small.fits is True and big.fits is False
    assert plan_memory(ParameterCount(text=1), CONFIG, mode="full").fits is None


def test_inference_memory_per_storage_format():
    count, config = count_parameters("qwen3-vl-30b-a3b")
    bf16 = plan_memory(count, config, mode="inference", dtype="bf16", tokens=16384)
    fp8 = plan_memory(count, config, mode="inference", dtype="fp8", tokens=16384)
    formats = weight_formats(count)
    assert bf16.weights == 2 * count.total == formats["bf16"]
    assert fp8.weights == formats["fp8"] and bf16.weights_by_format == formats
    # vlm dequantizes the MoE experts (most of this model): FP8 saves only the dense part,
    # while the FP8 checkpoint on disk is about half the bf16 one
    assert 0.95 * bf16.weights < fp8.weights < bf16.weights
    assert 0.5 < formats["fp8_checkpoint"] / formats["bf16"] < 0.55
    dense_count, dense_config = count_parameters("qwen3-vl-8b")
    dense = weight_formats(dense_count)
    assert dense["fp8"] == dense["fp8_checkpoint"] and 0.55 < dense["fp8"] / dense["bf16"] < 0.65
    # K and V, 48 layers x 4 kv heads x 128 dims x 16k tokens in 16 bits
    assert bf16.kv_cache == fp8.kv_cache == 2 * 48 * 4 * 128 * 16384 * 2
    with pytest.raises(PlanError, match="fp8"):
        plan_memory(count, config, mode="full", dtype="fp8")


def test_fp8_weights_by_hand():
    """e4m3 projections + one fp32 scale per 128x128 block; the rest bf16. A projection whose
    input width is no multiple of 128 stays bf16 in vlm (its activation groups must tile the
    input) but is FP8 in the file; experts are FP8 only in the file."""
    count = ParameterCount(vision=500, embeddings=1000, text=256 * 384 + 100 * 64 + 10,
                           experts=4 * 3 * 128 * 256,
                           lora_targets=[(256, 384), (100, 64)],
                           expert_matrices=[(8, 128, 256), (4, 256, 128)])
    rest = 500 + 1000 + 10
    projection = 384 * 256 + 4 * 3 * 2  # (384, 256): 3 x 2 blocks
    small = 64 * 100 + 4 * 1  # one block
    experts = 8 * (128 * 256 + 4 * 2) + 4 * (256 * 128 + 4 * 2)
    assert weight_formats(count) == {
        "bf16": 2 * count.total,
        "fp8": 2 * rest + projection + 2 * 100 * 64 + 2 * count.experts,
        "fp8_checkpoint": 2 * rest + projection + small + experts,
    }


def test_fp8_checkpoint_size_is_a_quantized_checkpoints(tmp_path):
    """The format's accounting equals a tiny MoE checkpoint quantized the way the official
    FP8 releases are (tests/test_vlm_fp8.py), tensor by tensor from its header."""
    from safetensors import safe_open

    from tests.test_vlm_fp8 import make_fp8_pair
    from tests.tiny_checkpoints import tiny_checkpoint

    folder, _ = tiny_checkpoint()
    fp8_dir = make_fp8_pair(folder, tmp_path, (128, 128))
    stored = 0
    for file in fp8_dir.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                t = f.get_slice(name)
                n = 1
                for d in t.get_shape():
                    n *= d
                # e4m3 1 byte, fp32 scales 4, every other tensor as bf16 (2)
                stored += n * {"F8_E4M3": 1}.get(t.get_dtype(), 4 if name.endswith(
                    "_scale_inv") else 2)
    count, _ = count_parameters(folder)
    assert count.expert_matrices  # an MoE: the experts' scales are counted too
    assert weight_formats(count)["fp8_checkpoint"] == stored


@pytest.mark.parametrize("name, billions", [("qwen3-vl-30b-a3b", 31.07), ("qwen3-vl-2b", 2.13),
                                            ("qwen3-vl-4b", 4.44), ("qwen3-vl-8b", 8.77),
                                            ("uitars-1.5-7b", 8.29)])
def test_published_model_sizes_from_their_configs(name, billions):
    count, _ = count_parameters(name)
    assert count.total / 1e9 == pytest.approx(billions, rel=0.005)


def test_the_config_count_equals_the_checkpoint_files_count():
    from tests.tiny_checkpoints import tiny_checkpoint, tiny_family_checkpoint

    folders = [tiny_checkpoint()[0], tiny_family_checkpoint("qwen3_vl")[0],
               tiny_family_checkpoint("qwen2_5_vl")[0]]
    for folder in folders:
        exact, config = count_parameters(folder)  # from the safetensors headers
        analytic = count_from_config(config)
        assert exact.total == analytic.total, folder
        assert (exact.vision, exact.experts, exact.embeddings) == \
            (analytic.vision, analytic.experts, analytic.embeddings)
        assert sorted(exact.lora_targets) == sorted(analytic.lora_targets)


def test_unknown_base_is_a_clear_error(tmp_path):
    with pytest.raises(PlanError, match="no config.json"):
        read_config(tmp_path)
    with pytest.raises(PlanError, match="not a checkpoint folder"):
        read_config("no-such-model")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PlanError, match="unreadable JSON"):
        read_config(tmp_path)


def _plan_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "train", "plan", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_says_whether_it_fits_and_what_to_change():
    out = _plan_cli("--base", "uitars-1.5-7b", "--full", "--gpu-memory", "80")
    assert out.returncode == 0, out.stderr
    assert "fits in 80.0 GiB: NO" in out.stdout
    assert "--lora-rank" in out.stdout and "--grad-checkpointing" in out.stdout
    ok = _plan_cli("--base", "uitars-1.5-7b", "--lora-rank", "16", "--gpu-memory", "80",
                   "--grad-checkpointing", "--json")
    plan = json.loads(ok.stdout)
    assert plan["fits"] is True and plan["mode"] == "lora"
    assert plan["activations"] == plan["activations_with_checkpointing"]


def test_cli_shows_the_weights_in_each_format_and_the_one_it_used():
    count, _ = count_parameters("qwen3-vl-8b")
    formats = weight_formats(count)
    out = _plan_cli("--base", "qwen3-vl-8b", "--lora-rank", "16", "--gpu-memory", "80")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    at = lines.index("weights for inference, per format:")
    assert lines[at + 1].split() == ["bf16", f"{formats['bf16'] / 2**30:.2f}", "GiB"]
    assert lines[at + 2].split()[:3] == ["fp8", f"{formats['fp8'] / 2**30:.2f}", "GiB"]
    assert "128x128 block" in lines[at + 2]
    assert f"the FP8 checkpoint is {formats['fp8_checkpoint'] / 2**30:.2f} GiB" in out.stdout
    assert "this plan counts the weights in bf16 (training" in out.stdout
    fp32 = _plan_cli("--base", "qwen3-vl-8b", "--full", "--dtype", "fp32", "--json")
    plan = json.loads(fp32.stdout)
    assert plan["weights_format"] == "fp32" and plan["weights"] == 4 * count.total
    assert plan["weights_by_format"] == formats


def test_cli_bad_base_exits_2_naming_it():
    out = _plan_cli("--base", "/no/such/checkpoint", "--lora-rank", "8")
    assert out.returncode == 2
    assert "/no/such/checkpoint" in out.stderr
