"""`deskpilot eval tasks|grounding` and `deskpilot tasks`, without a display (offscreen).

The commands run in-process through app.cli.main (the same path as the console script)
so the test pays for Qt and the model-size code once, not per command."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.dialects import get_dialect
from agent.frames import Frame, Rect, image_to_model
from agent.tasks import generate

pytest.importorskip("PySide6")


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def deskpilot(tmp_path, monkeypatch, capsys):
    """deskpilot(*args) -> Done, with settings in a fresh folder."""
    from app.cli import main

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "cfg"))

    def run(*args: str) -> Done:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return run


def test_eval_tasks_offscreen_with_the_expert_scores_one(tmp_path, deskpilot):
    out = tmp_path / "eval.json"
    done = deskpilot("eval", "tasks", "--seeds", "0-4", "--policy", "expert", "--env",
                     "offscreen", "--json", str(out), "--report", str(tmp_path / "r.html"),
                     "--runs", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary == json.loads(out.read_text())
    assert set(summary) == {"success_rate", "tasks"} and summary["success_rate"] == 1.0
    assert [t["seed"] for t in summary["tasks"]] == [0, 1, 2, 3, 4]
    from agent.trajectory import load_run

    for entry in summary["tasks"]:
        assert set(entry) == {"seed", "kind", "success", "steps", "seconds_per_step", "run"}
        assert entry["kind"] == generate(entry["seed"]).kind and entry["success"] is True
        assert isinstance(entry["seconds_per_step"], float) and entry["seconds_per_step"] > 0
        run = load_run(entry["run"])  # a normal recorded run
        assert run.meta["outcome"] == "finished" and len(run.steps) == entry["steps"]
        assert run.meta["task"] == generate(entry["seed"]).instruction
        assert run.meta["extra"]["practice_task"]["seed"] == entry["seed"]
        assert run.meta["extra"]["check"]["success"] is True
        assert run.steps[0]["reply"].startswith("Thought: ")
        lines = (Path(entry["run"]) / "labels.jsonl").read_text().splitlines()
        assert [json.loads(line)["index"] for line in lines] == list(range(entry["steps"]))
        labels = json.loads(lines[0])["labels"]
        task = generate(entry["seed"])
        shown = {item["label"] for item in labels}
        assert {w.label for w in task.layout.widgets if w.kind == "button" and not w.parent} \
            <= shown
    html = (tmp_path / "r.html").read_text()
    assert "100.0%" in html and "seed" in html
    # A recorded expert run replays as a policy and solves its task again.
    first = summary["tasks"][0]
    again = deskpilot("eval", "tasks", "--seeds", str(first["seed"]), "--policy",
                      f"replay:{first['run']}", "--env", "offscreen",
                      "--runs", str(tmp_path / "replayed"))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["success_rate"] == 1.0
    reported = deskpilot("report", first["run"], "--out", str(tmp_path / "run.html"))
    assert reported.returncode == 0 and (tmp_path / "run.html").stat().st_size > 1000


def test_eval_tasks_counts_a_wrong_click_as_a_failure(tmp_path, deskpilot):
    """A script that clicks the desktop beside the window, then says it is done."""
    seed = next(s for s in range(200) if generate(s).skill == "click")
    script = tmp_path / "wrong.txt"
    script.write_text("Thought: click.\nAction: click(start_box='<|box_start|>(2,2)"
                      "<|box_end|>')\n---\nThought: done.\nAction: finished(content='')\n")
    done = deskpilot("eval", "tasks", "--seeds", str(seed), "--policy", f"script:{script}",
                     "--dialect", "uitars-1.5", "--env", "offscreen",
                     "--runs", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["success_rate"] == 0.0
    (task,) = summary["tasks"]
    assert task["success"] is False and task["steps"] == 2
    assert "never got a click" in done.stderr


def test_eval_tasks_bad_input_is_a_usage_error(deskpilot, monkeypatch):
    bad = deskpilot("eval", "tasks", "--seeds", "9-3", "--policy", "expert", "--env",
                    "offscreen")
    assert bad.returncode == 2 and "--seeds" in bad.stderr
    nomodel = deskpilot("eval", "tasks", "--seeds", "0", "--env", "offscreen")
    assert nomodel.returncode == 2 and "no model is configured" in nomodel.stderr
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    nodisplay = deskpilot("eval", "tasks", "--seeds", "0", "--policy", "expert")
    assert nodisplay.returncode == 2 and "--env offscreen" in nodisplay.stderr
    missing = deskpilot("eval", "grounding", "/no/such/file.json", "--policy", "expert")
    assert missing.returncode == 2 and "not screenshots" in missing.stderr
    missing = deskpilot("eval", "grounding", "/no/such/file.json", "--policy", "script:x")
    assert missing.returncode == 2 and "not found" in missing.stderr


@pytest.fixture
def exported(tmp_path, deskpilot):
    out = tmp_path / "grounding"
    done = deskpilot("tasks", "export-grounding", "--seeds", "0-7", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_export_grounding_writes_screenspot_v2_records(exported):
    records = json.loads((exported / "screenspot_practice.json").read_text())
    assert len(records) == 8
    for r in records:
        assert set(r) >= {"img_filename", "bbox", "instruction", "data_type", "data_source"}
        assert (exported / "images" / r["img_filename"]).is_file()
        x, y, w, h = r["bbox"]  # ScreenSpot-v2: x, y, width, height in image pixels
        assert w > 0 and h > 0 and 0 <= x and x + w <= 1280 and y + h <= 800
        assert r["data_type"] in ("text", "icon")


def _uitars_click(x: float, y: float) -> str:
    dialect = get_dialect("uitars-1.5")
    frame = Frame(Rect(0, 0, 1280, 800), (1280, 800)).with_model(
        dialect.model_size(1280, 800), "absolute")
    mx, my = image_to_model(frame, x, y)
    point = f"<|box_start|>({mx:.1f},{my:.1f})<|box_end|>"
    return f"Thought: there.\nAction: click(start_box='{point}')"


def test_eval_grounding_reproduces_hand_computed_accuracy(exported, tmp_path, deskpilot):
    records = json.loads((exported / "screenspot_practice.json").read_text())
    hits = [True, False, True, True, False, True, False, True]
    replies = []
    for r, hit in zip(records, hits, strict=True):
        x, y, w, h = r["bbox"]
        # a hit: inside, near the far corner; a miss: just left of the box
        replies.append(_uitars_click(x + w * 0.8, y + h * 0.7) if hit
                       else _uitars_click(max(0, x - 6), y + h / 2))
    script = tmp_path / "clicks.txt"
    script.write_text("\n---\n".join(replies))
    out = tmp_path / "g.json"
    done = deskpilot("eval", "grounding", str(exported / "screenspot_practice.json"),
                     "--policy", f"script:{script}", "--dialect", "uitars-1.5",
                     "--json", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert summary["total"] == 8 and summary["correct"] == 5
    assert summary["accuracy"] == pytest.approx(5 / 8)
    by_type: dict[str, list[bool]] = {}
    for r, hit in zip(records, hits, strict=True):
        by_type.setdefault(r["data_type"], []).append(hit)
    for data_type, values in by_type.items():
        entry = summary["by_data_type"][data_type]
        assert (entry["correct"], entry["total"]) == (sum(values), len(values))
        assert summary["by_platform_and_type"][f"desktop/{data_type}"]["total"] == len(values)
    assert summary["by_platform"] == {"desktop": {"correct": 5, "total": 8, "accuracy": 0.625}}
    assert [s["hit"] for s in summary["samples"]] == hits


def test_grounding_formats(tmp_path):
    from agent.eval import GroundingFormatError, load_grounding

    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps([{"img_filename": "a.png", "bbox": [10, 20, 30, 40],
                               "instruction": "close", "data_type": "icon",
                               "data_source": "ios"}]))
    (sample,) = load_grounding(v2)
    assert sample.box == (10, 20, 40, 60) and sample.platform == "mobile"
    pro = tmp_path / "pro.json"
    pro.write_text(json.dumps([{"img_filename": "b.png", "bbox": [10, 20, 30, 40],
                                "instruction": "open", "ui_type": "text",
                                "platform": "windows", "group": "Dev",
                                "img_size": [100, 100]}]))
    (sample,) = load_grounding(pro)
    assert sample.box == (10, 20, 30, 40)
    assert (sample.data_type, sample.platform) == ("text", "windows")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"img_filename": "c.png", "instruction": "x"}]))
    with pytest.raises(GroundingFormatError, match="bbox"):
        load_grounding(bad)
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([{"img_filename": "c.png", "instruction": "x",
                                 "bbox": [10, 10, 0, 5]}]))
    with pytest.raises(GroundingFormatError, match="no area"):
        load_grounding(flat)


def test_tasks_show_and_label(tmp_path, deskpilot):
    shown = deskpilot("tasks", "show", "3")
    assert shown.returncode == 0 and json.loads(shown.stdout)["seed"] == 3
    labelled = deskpilot("tasks", "label", "3", "--image", str(tmp_path / "s.png"))
    assert labelled.returncode == 0, labelled.stderr
    labels = json.loads(labelled.stdout)
    task = generate(3)
    shown_labels = {item["label"] for item in labels}
    assert {w.label for w in task.layout.widgets if w.kind == "button"} <= shown_labels
    assert (tmp_path / "s.png").is_file()
