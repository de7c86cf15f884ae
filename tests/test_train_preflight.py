"""The pre-flight memory check of `train sft|dpo` (train/preflight.py): a base whose memory
plan exceeds the device stops before its weights load, with the base, the GiB needed and
available and what to change; the tiny base on this machine trains; --no-memory-check
trains anyway."""

from __future__ import annotations

import json

import pytest
import torch

from app import cli
from tests.test_train_ddp import sharegpt
from tests.tiny_checkpoints import tiny_family_checkpoint
from train import preflight, sft
from train.errors import TrainError
from train.plan import GIB, count_parameters, plan_memory, system_memory_bytes
from train.sft import SftOptions, run_sft

BUDGET = 2**19  # 512 KiB: less than the tiny base's weights alone


@pytest.fixture
def settings_env(tmp_path, monkeypatch):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "settings.json").write_text(json.dumps({"runs_dir": str(tmp_path / "runs")}))
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(cfg))


def small_device(monkeypatch, budget=BUDGET):
    """The probe reports `budget` bytes; loading weights after it said no is a failure."""
    monkeypatch.setattr(preflight, "available_memory",
                        lambda device: (budget, "test budget of 512 KiB"))

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights loaded before the memory check refused the base")

    monkeypatch.setattr(sft, "load_base_weights", no_loading)


def options(tmp_path, base, **kw) -> SftOptions:
    return SftOptions(inputs=[str(sharegpt(tmp_path))], base=str(base), out=str(tmp_path / "o"),
                      full=True, steps=1, device="cpu", pack_tokens=200, save_every=0, **kw)


def test_a_base_too_big_for_the_device_stops_before_loading(tmp_path, settings_env,
                                                            monkeypatch):
    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    small_device(monkeypatch)
    with pytest.raises(TrainError) as info:
        run_sft(options(tmp_path, base))
    msg = str(info.value)
    count, config = count_parameters(base)
    weights = count.total * 4  # fp32 on the CPU
    assert f"--base {base} does not fit" in msg
    assert "but 0.50 MiB is available (test budget of 512 KiB)" in msg
    needed = float(msg.split("needs ~")[1].split(" MiB")[0])
    assert needed * 2**20 > weights > BUDGET  # at least the weights, more than the budget
    assert f"weights {weights / 2**20:.2f} MiB" in msg
    assert "use LoRA (--lora-rank 16) instead of --full" in msg  # the plan's advice
    assert "--no-memory-check" in msg
    assert not (tmp_path / "o" / "train_log.jsonl").exists()


def test_the_needed_figure_is_train_plans_for_the_longest_row(tmp_path, settings_env):
    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    opts = options(tmp_path, base, grad_checkpointing=True)
    count, config = count_parameters(base)
    from train.data import base_speaks, load_samples
    from train.pack import pack

    folder, cfg = sft.resolve_base(str(base))
    samples = load_samples(opts.inputs, base_speaks(folder, cfg))
    rows = pack(samples, opts.pack_tokens, cfg.image_token_id, cfg.vision.spatial_merge_size)
    tokens, targets = preflight.longest_row(rows)
    built = [rows[i] for i in range(len(rows))]
    assert tokens == max(r.num_tokens for r in built)
    assert targets == max(r.target_tokens for r in built)
    plan = preflight.check_memory(str(base), folder, torch.device("cpu"), dtype="fp32",
                                  full=True, lora_rank=None, train_vision=False, rows=rows,
                                  grad_checkpointing=True, shard=False,
                                  available=(64 * GIB, "given"))
    want = plan_memory(count, config, mode="full", dtype="fp32", tokens=tokens,
                       logit_tokens=targets, grad_checkpointing=True, available_bytes=64 * GIB)
    assert plan.total == want.total and plan.fits


def test_the_tiny_base_fits_this_machine_and_trains(tmp_path, settings_env):
    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    avail, source = preflight.available_memory(torch.device("cpu"))
    assert avail is not None and avail > 0 and "cpu" in source
    summary = run_sft(options(tmp_path, base))
    assert summary["steps"] == 1 and summary["last_loss"] > 0


def test_no_memory_check_trains_anyway(tmp_path, settings_env, monkeypatch):
    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    monkeypatch.setattr(preflight, "available_memory", lambda device: (BUDGET, "test"))
    summary = run_sft(options(tmp_path, base, memory_check=False))
    assert summary["steps"] == 1


def test_the_commands_report_it_and_exit_2(tmp_path, settings_env, monkeypatch, capsys):
    from tests.test_train_dpo import write_pairs

    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    small_device(monkeypatch)
    code = cli.main(["train", "sft", str(sharegpt(tmp_path)), "--base", str(base), "--out",
                     str(tmp_path / "s"), "--lora-rank", "4", "--device", "cpu",
                     "--pack-tokens", "200"])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit: --lora-rank 4 in fp32 on cpu" in err
    assert "Traceback" not in err
    code = cli.main(["train", "dpo", str(write_pairs(tmp_path)), "--base", str(base), "--out",
                     str(tmp_path / "d"), "--full", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and f"--base {base} does not fit: --full" in err


def test_cpu_memory_reads_mem_available(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:         1000 kB\n"
                       "MemAvailable:    8388608 kB\n")
    assert preflight.cpu_available_bytes(meminfo) == (8 * GIB,
                                                      "cpu: 8.0 GiB available RAM")
    meminfo.write_text("garbage\n")
    avail, source = preflight.cpu_available_bytes(meminfo)  # falls back to the RAM size
    assert avail == system_memory_bytes() and "RAM" in source
