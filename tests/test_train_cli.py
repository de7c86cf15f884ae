"""`deskpilot train sft` on bad input: the exact flags are required, and every error names
the file or option at fault (exit 2, no traceback)."""

from __future__ import annotations

import json

import pytest
import torch

from app import cli
from app.commands import train_sft


def sft(*args: str) -> int:
    return cli.main(["train", "sft", *args])


def test_help_states_the_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        train_sft.main(["--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--lora-rank", "--full", "--merge", "--steps", "--epochs", "--lr", "--device",
                 "--pack-tokens", "--grad-checkpointing", "--dtype", "--train-vision",
                 "--only-success", "--resume"):
        assert flag in out
    assert "default: 3.0" in out and "default: 16384" in out and "2e-4 with LoRA" in out


def test_lora_or_full_is_required(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        sft(str(tmp_path), "--base", str(tmp_path), "--out", str(tmp_path / "o"))
    assert info.value.code == 2
    assert "--lora-rank" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sft(str(tmp_path), "--base", "b", "--out", "o", "--full", "--lora-rank", "8")


def test_unknown_architecture_names_the_config(tmp_path, capsys):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                  "model_type": "llama"}))
    code = sft(str(tmp_path), "--base", str(base), "--out", str(tmp_path / "o"), "--full",
               "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "config.json" in err and "LlamaForCausalLM" in err
    assert "Traceback" not in err


def test_missing_base_and_bad_dtype_are_clear(tmp_path, capsys):
    code = sft(str(tmp_path), "--base", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
               "--lora-rank", "8", "--device", "cpu")
    assert code == 2 and "does not exist" in capsys.readouterr().err
    if not torch.cuda.is_available():
        code = sft(str(tmp_path), "--base", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--full", "--device", "cuda")
        assert code == 2 and "no CUDA GPU" in capsys.readouterr().err
