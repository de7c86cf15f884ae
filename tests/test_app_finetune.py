"""The Runs tab's "Fine-tune on selected runs…": plan, train on a worker thread with the
loss curve, stop with a checkpoint, load the result as the current model (offscreen Qt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from agent.memenv import MemoryEnv  # noqa: E402
from agent.settings import Settings  # noqa: E402

CLICK = "Thought: Click the centre.\nAction: click(start_box='(210,112)')"
DONE = "Thought: Done.\nAction: finished(content='ok')"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "config"))
    s = Settings(runs_dir=str(tmp_path / "runs"), model="scripted", safety="normal")
    s.save()
    return s


@pytest.fixture
def recorded_run(tmp_path, monkeypatch) -> Path:
    """A uitars-1.5 run at the tiny Qwen2.5-VL checkpoint's pixel bounds."""
    from agent.dialects import get_dialect
    from tests import trajectory_runs

    monkeypatch.setattr(trajectory_runs, "dialect", lambda h=5, n="uitars-1.5":
                        get_dialect(n, history_n=h, max_pixels=100352))
    return trajectory_runs.record_run(tmp_path / "runs", [CLICK, DONE],
                                      env=MemoryEnv(640, 360))


@pytest.fixture
def window(qtbot, settings):
    from app.commands.gui import build_window

    win = build_window(settings, env_factory=lambda: MemoryEnv(640, 360))
    qtbot.addWidget(win)
    win.show()
    return win


def _open_dialog(window, qtbot, run: Path):
    from tests.tiny_checkpoints import tiny_family_checkpoint

    base, _ = tiny_family_checkpoint("qwen2_5_vl")
    window.controller.refresh_runs()
    window.runs.select(run)
    assert window.runs.finetune_button.isEnabled()
    dialog = window.controller.finetune_runs(window.runs.selected_paths(), show=False)
    qtbot.addWidget(dialog)
    dialog.base.setText(str(base))
    dialog.update_plan()
    dialog.device.setCurrentText("cpu")
    return dialog


def test_trains_shows_the_loss_and_loads_the_result(window, qtbot, recorded_run, tmp_path):
    dialog = _open_dialog(window, qtbot, recorded_run)
    assert "total" in dialog.plan.toPlainText() and "weights" in dialog.plan.toPlainText()
    dialog.steps.setValue(3)
    dialog.out.setText(str(tmp_path / "ft"))
    dialog.train_button.click()
    qtbot.waitUntil(lambda: dialog.load_button.isEnabled(), timeout=300_000)
    assert len(dialog.curve.losses) == 3
    log = (tmp_path / "ft" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in log] == pytest.approx(dialog.curve.losses)
    merged = Path(dialog.result["merged"])
    assert (merged / "config.json").is_file() and (tmp_path / "ft" / "adapter").is_dir()
    dialog.load_button.click()
    panel = window.model_panel
    assert panel.values()["model"] == str(merged)
    qtbot.waitUntil(lambda: "loaded" in panel.load_status.text(), timeout=120_000)


def test_stop_saves_a_checkpoint_and_says_how_to_resume(window, qtbot, recorded_run,
                                                        tmp_path):
    dialog = _open_dialog(window, qtbot, recorded_run)
    dialog.steps.setValue(10_000)
    dialog.out.setText(str(tmp_path / "ft"))
    dialog.train_button.click()
    qtbot.waitUntil(lambda: len(dialog.curve.losses) >= 1, timeout=300_000)
    dialog.stop_button.click()
    qtbot.waitUntil(lambda: dialog.train_button.isEnabled(), timeout=120_000)
    assert "Stopped" in dialog.status.text() and "--resume" in dialog.status.text()
    assert (tmp_path / "ft" / "checkpoint.pt").is_file()
    assert not dialog.load_button.isEnabled()
    assert len(dialog.curve.losses) < 10_000


def test_a_base_that_cannot_be_planned_says_why(window, qtbot, recorded_run):
    dialog = _open_dialog(window, qtbot, recorded_run)
    dialog.base.setText("/no/such/model")
    dialog.update_plan()
    assert "No plan" in dialog.plan.toPlainText() and "/no/such/model" in \
        dialog.plan.toPlainText()
