"""`torchrun --nproc-per-node 2 -m train sft|dpo ...` on the CPU (gloo): two ranks with
--accumulate 1 log the same losses as one process with --accumulate 2 (the same global
batch), and only rank 0 writes the outputs. sft runs --full (FSDP2: its gathered merged
weights equal the single process's), dpo runs LoRA (DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app import cli
from tests.tiny_checkpoints import tiny_family_checkpoint
from tests.vlm_parity_checks import noise_image

ROOT = Path(__file__).resolve().parents[1]


def sharegpt(tmp_path) -> Path:
    """Four one-screenshot records with different replies (four rows of one sample)."""
    records = []
    for k in range(4):
        name = f"shot{k}.png"
        noise_image(56, 56, k).save(tmp_path / name)
        records.append({"messages": [
            {"role": "user", "content": f"<image>task {k}"},
            {"role": "assistant", "content": f"Thought: go {k}\nAction: click(start_box="
                                             f"'({k * 9},{k * 7})')"}], "images": [name]})
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "settings.json").write_text(json.dumps({"runs_dir": str(tmp_path / "runs")}))
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(cfg))
    return {**os.environ, "PYTHONPATH": str(ROOT), "DESKPILOT_CONFIG_DIR": str(cfg),
            "OMP_NUM_THREADS": "1"}


def losses(out: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (out / "train_log.jsonl").read_text().splitlines()]


def torchrun(env, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "-m", "train", *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_two_ranks_equal_one_process_on_the_same_global_batch(tmp_path, env, method):
    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    if method == "sft":
        data = sharegpt(tmp_path)
        how = ["--full", "--lr", "1e-3", "--pack-tokens", "200"]
    else:
        from tests.test_train_dpo import write_pairs

        data = write_pairs(tmp_path, n=4)
        how = ["--lora-rank", "4", "--lora-dropout", "0", "--lr", "1e-2"]
    common = [str(data), "--base", str(base), *how, "--steps", "3", "--warmup", "0",
              "--device", "cpu", "--save-every", "0"]
    single = tmp_path / "single"
    assert cli.main(["train", method, *common, "--out", str(single), "--accumulate", "2"]) == 0
    ranks = tmp_path / "ranks"
    done = torchrun(env, method, *common, "--out", str(ranks), "--accumulate", "1", "-v")
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("FSDP2: the model sharded over 2 ranks" in done.stderr) == (method == "sft")
    assert losses(ranks) == pytest.approx(losses(single), rel=1e-5)
    assert len(set(losses(single))) > 1  # the updates moved the loss: they were compared too
    args = json.loads((ranks / "train_args.json").read_text())
    assert args["resolved"]["world_size"] == 2
    assert done.stdout.count("trained 3") == 1  # rank 0 reports; rank 1 is silent
    if method == "sft":  # --full: FSDP2; the gathered weights are the single process's
        from safetensors.torch import load_file

        (one,) = (single / "merged").glob("*.safetensors")
        got, want = load_file(ranks / "merged" / one.name), load_file(one)
        assert got.keys() == want.keys()
        for name in want:
            assert torch.allclose(got[name], want[name], rtol=1e-4, atol=1e-6), name


def test_usage_without_a_method():
    done = subprocess.run([sys.executable, "-m", "train"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 2 and "torchrun --nproc-per-node N -m train" in done.stderr
