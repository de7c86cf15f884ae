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
    assert fp8.weights * 2 == bf16.weights
    # K and V, 48 layers x 4 kv heads x 128 dims x 16k tokens in 16 bits
    assert bf16.kv_cache == 2 * 48 * 4 * 128 * 16384 * 2
    with pytest.raises(PlanError, match="fp8"):
        plan_memory(count, config, mode="full", dtype="fp8")


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


def test_cli_bad_base_exits_2_naming_it():
    out = _plan_cli("--base", "/no/such/checkpoint", "--lora-rank", "8")
    assert out.returncode == 2
    assert "/no/such/checkpoint" in out.stderr
