"""Small CLI promises: `deskpilot --version`, `serve` checking the model before taking the
port, `parse --image-size` warning about sizes no model sees, `export last` finding runs
recorded with `--record DIR`."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from agent.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("DESKPILOT_STATE_DIR", raising=False)
    return tmp_path / "cfg"


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", flag], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"deskpilot {version('deskpilot')}"
    assert re.fullmatch(r"deskpilot \d+\.\d+\S*", done.stdout.strip())


# --- serve ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "not a checkpoint", "bad hub id"])
def test_serve_checks_the_model_before_binding_the_port(kind, tmp_path, capsys):
    from app.commands import serve

    if kind == "missing":
        model, expected = str(tmp_path / "no-such-checkpoint"), "not found"
    elif kind == "not a checkpoint":
        (tmp_path / "empty").mkdir()
        model, expected = str(tmp_path / "empty"), "no config.json"
    else:
        model, expected = "not-a-hub-id", "not found"
    assert serve.main([model, "--port", "0"]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err and model in captured.err
    assert "serving" not in captured.out  # it never got as far as listening


# --- parse --image-size ------------------------------------------------------------------

REPLY = "Thought: centre\nAction: click(start_box='(960,540)')"


def parse_cli(monkeypatch, capsys, argv, stdin):
    from app.commands import parse

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = parse.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_parse_warns_about_an_image_size_the_model_never_sees(monkeypatch, capsys):
    code, out, err = parse_cli(
        monkeypatch, capsys, ["--dialect", "uitars-1.5", "--image-size", "1920x1080"], REPLY
    )
    assert code == 0
    assert json.loads(out)["actions"] == [{"type": "click", "x": 960, "y": 540}]
    assert "warning" in err and "multiple of 28" in err
    assert "1932x1092" in err and "--screen-size 1920x1080" in err


def test_parse_is_quiet_for_a_real_model_size(monkeypatch, capsys):
    code, _, err = parse_cli(
        monkeypatch, capsys,
        ["--dialect", "uitars-1.5", "--image-size", "1932x1092", "--screen-size", "1920x1080"],
        REPLY,
    )  # fmt: skip
    assert code == 0 and err == ""


def test_parse_checks_each_dialects_own_factor(monkeypatch, capsys):
    qwen = (
        '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", '
        '"coordinate": [500, 500]}}</tool_call>'
    )
    lines = "\n".join(
        json.dumps({"response": r, "dialect": d, "image_size": s, "screen_size": [1920, 1080]})
        for r, d, s in [
            (qwen, "qwen3-vl", [1920, 1088]),  # a multiple of 32: fine
            (qwen, "qwen3-vl", [1932, 1092]),  # 28's multiple, not 32's
            (qwen, "qwen3-vl", [1932, 1092]),  # warned once only
        ]
    )
    code, out, err = parse_cli(monkeypatch, capsys, ["--jsonl"], lines + "\n")
    assert code == 0 and len(out.splitlines()) == 3
    assert err.count("warning") == 1 and "multiple of 32" in err


# --- export last ---------------------------------------------------------------------------


def scripted_run(tmp_path: Path, record_dir: Path, task: str) -> Path:
    from app.commands import run as run_cmd

    script = tmp_path / "script.txt"
    script.write_text("Thought: done\nAction: finished(content='ok')\n", encoding="utf-8")
    argv = [task, "--policy", f"script:{script}", "--env", "memory", "--record", str(record_dir)]
    assert run_cmd.main(argv) == 0
    (run_dir,) = [p for p in record_dir.iterdir() if task.replace(" ", "-") in p.name]
    return run_dir


def test_export_last_finds_a_run_recorded_with_record_dir(tmp_path, capsys):
    from agent.trajectory.loader import resolve_run_path
    from app.commands import export

    settings_runs = tmp_path / "settings-runs"
    Settings(runs_dir=str(settings_runs)).save()
    elsewhere = scripted_run(tmp_path, tmp_path / "elsewhere", "first task")
    assert resolve_run_path("last", settings_runs) == elsewhere
    out_dir = tmp_path / "out"
    capsys.readouterr()
    assert export.main(["last", "--format", "swift", "--out", str(out_dir)]) == 0
    assert "from 1 runs" in capsys.readouterr().out
    exported = "\n".join(p.read_text() for p in out_dir.glob("*.jsonl"))
    assert "first task" in exported

    # a newer run in the settings' folder is newer than the remembered one: it wins
    newer = scripted_run(tmp_path, settings_runs, "second task")
    assert resolve_run_path("last", settings_runs) == newer


def test_last_with_no_runs_anywhere_says_so(tmp_path):
    from agent.trajectory.loader import resolve_run_path

    with pytest.raises(FileNotFoundError, match="no recorded runs"):
        resolve_run_path("last", tmp_path / "none")
