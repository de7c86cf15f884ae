"""`--resume` of a `torchrun --nproc-per-node 2 -m train sft ... --full` (FSDP2) run on the
CPU (gloo): a run killed after step 3 resumes from its step-2 checkpoint (the full weights
and AdamW state, gathered from the shards and written by rank 0) and logs the same losses,
and ends with the same merged weights, as the run uninterrupted. The uninterrupted run is
one process on the same global batch (--accumulate 2), which test_train_ddp.py shows equal
to two ranks; it runs in this process, sparing a third torchrun start (~30 s here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from app import cli
from tests.test_train_ddp import ROOT, losses, sharegpt, torchrun
from tests.tiny_checkpoints import tiny_family_checkpoint


@pytest.fixture
def rank_env(tmp_path, monkeypatch):
    """Settings in tmp_path, for this process and the ranks torchrun starts."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "settings.json").write_text(json.dumps({"runs_dir": str(tmp_path / "runs")}))
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(cfg))
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def killed_after(env, step: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(ROOT / "tests" / "scripts" / "train_killed_after.py"), str(step), *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_killed_fsdp2_run_resumes_with_the_losses_of_an_uninterrupted_one(tmp_path,
                                                                            rank_env):
    env = rank_env
    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    common = ["sft", str(sharegpt(tmp_path)), "--base", str(base), "--full", "--lr", "1e-3",
              "--pack-tokens", "200", "--steps", "4", "--warmup", "0", "--device", "cpu",
              "--save-every", "2"]
    whole = tmp_path / "whole"
    assert cli.main(["train", *common, "--out", str(whole), "--accumulate", "2"]) == 0
    assert len(set(losses(whole))) == 4  # every step moved the loss: each one is compared

    cut = tmp_path / "cut"
    dead = killed_after(env, 3, *common, "--out", str(cut), "--accumulate", "1")
    assert dead.returncode != 0
    state = torch.load(cut / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 2 and len(state["rng_ranks"]) == 2
    assert len(losses(cut)) == 3  # step 3 ran, but after the checkpoint: it is redone
    trained = json.loads((cut / "train_args.json").read_text())["resolved"]
    saved = sum(t.numel() for t in state["weights"].values())
    assert saved == trained["trainable_parameters"]  # the whole weights, not one shard

    resumed = torchrun(env, *common, "--out", str(cut), "--accumulate", "1", "--resume", "-v")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "FSDP2" in resumed.stderr
    log = [json.loads(x) for x in (cut / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert losses(cut) == pytest.approx(losses(whole), rel=1e-5)

    from safetensors.torch import load_file

    (file,) = (whole / "merged").glob("*.safetensors")
    got, want = load_file(cut / "merged" / file.name), load_file(file)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-7), name
