"""`deskpilot train mini`: the whole deskpilot-mini recipe on a tiny config, end to end.

A little data of every stage rendered offscreen, a couple of optimizer steps each, the
held-out evaluation through the real agent loop after each stage, then the checkpoint
loaded by vlm.load and by transformers, and --resume keeping finished stages.
"""

from __future__ import annotations

import json

import pytest

from app.commands import train_mini

TINY = ["--shape", "tiny", "--scale", "0.02", "--eval-seeds", "0-1", "--eval-max-steps", "1",
        "--eval-max-new-tokens", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "run"
    assert train_mini.main(["--out", str(out), *TINY]) == 0
    return out


def test_every_stage_trains_and_is_evaluated_on_held_out_seeds(trained):
    curve = [json.loads(line) for line in (trained / "curve.jsonl").read_text().splitlines()]
    assert [p["stage"] for p in curve] == ["read", "single", "multi"]
    screens = [p["screens_seen"] for p in curve]
    assert screens == sorted(screens) and screens[0] > 0
    for point in curve:
        assert point["eval_seeds"] == 2 and 0.0 <= point["success_rate"] <= 1.0
        log = (trained / "stages" / point["stage"] / "train_log.jsonl").read_text().splitlines()
        assert len(log) == point["steps"]
        assert all(json.loads(line)["target_tokens"] > 0 for line in log)
    runs = sorted((trained / "eval" / "multi").iterdir())
    assert len(runs) == 2 and all((r / "steps.jsonl").is_file() for r in runs)


def test_the_model_is_an_ordinary_checkpoint(trained):
    import torch
    from transformers import AutoTokenizer, Qwen3VLMoeForConditionalGeneration

    import vlm
    from train.mini import SHAPES

    model_dir = trained / "model"
    engine = vlm.load(str(model_dir), device="cpu", dtype="fp32")
    assert engine is not None
    hf = Qwen3VLMoeForConditionalGeneration.from_pretrained(str(model_dir),
                                                            dtype=torch.float32)
    assert sum(p.numel() for p in hf.parameters()) > 0
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    # digits one per token, the fixed prompt merged into few tokens
    assert tok.convert_ids_to_tokens(tok("[512, 384]")["input_ids"]).count("5") == 1
    pre = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert pre["max_pixels"] == SHAPES["tiny"].max_pixels and pre["patch_size"] == 16
    weights = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    assert weights < 40 * 2**20


def test_resume_keeps_finished_stages_and_refuses_other_options(trained, capsys):
    before = (trained / "model" / "model.safetensors").read_bytes()
    assert train_mini.main(["--out", str(trained), *TINY, "--resume"]) == 0
    assert (trained / "model" / "model.safetensors").read_bytes() == before
    changed = [a if a != "0.02" else "0.03" for a in TINY]
    assert train_mini.main(["--out", str(trained), *changed, "--resume"]) == 2
    assert "scale" in capsys.readouterr().err


def test_bad_input_is_refused_with_a_reason(tmp_path, capsys):
    assert train_mini.main(["--out", str(tmp_path / "x"), "--eval-seeds", "9-1"]) == 2
    assert "--eval-seeds" in capsys.readouterr().err
    assert train_mini.main(["--out", str(tmp_path / "y"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert train_mini.main(["--out", str(tmp_path / "z"), "--eval-screen", "big"]) == 2
    assert "--eval-screen" in capsys.readouterr().err


def test_eval_tasks_shows_the_model_screenshots_at_its_own_pixel_bounds(trained, tmp_path,
                                                                       monkeypatch, capsys):
    """`deskpilot eval tasks --policy local:DIR --env offscreen` with no max_pixels in the
    settings resizes screenshots to the checkpoint's bound, as the model was trained."""
    from agent.dialects import get_dialect
    from app.cli import main
    from train.mini import SHAPES

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "cfg"))
    runs = tmp_path / "runs"
    code = main(["eval", "tasks", "--seeds", "0", "--policy", f"local:{trained / 'model'}",
                 "--env", "offscreen", "--max-steps", "1", "--max-new-tokens", "8",
                 "--runs", str(runs)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert [t["seed"] for t in summary["tasks"]] == [0]
    (run,) = runs.iterdir()
    step = json.loads((run / "steps.jsonl").read_text().splitlines()[0])
    want = get_dialect("qwen3-vl", max_pixels=SHAPES["tiny"].max_pixels).model_size(1280, 800)
    assert tuple(step["frame"]["model_size"]) == tuple(want)


def test_the_committed_model_loads_and_fits_the_size_limit():
    from pathlib import Path

    import vlm
    from train.mini import MAX_PIXELS

    folder = Path(__file__).resolve().parents[1] / "assets" / "models" / "deskpilot-mini"
    assert (folder / "MODEL_CARD.md").is_file()
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size <= 40 * 2**20
    assert json.loads((folder / "preprocessor_config.json").read_text())["max_pixels"] == \
        MAX_PIXELS
    assert json.loads((folder / "config.json").read_text())["model_type"] == "qwen3_vl_moe"
    engine = vlm.load(str(folder), device="cpu", dtype="fp32")
    assert engine is not None
