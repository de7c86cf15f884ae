"""The practice sandbox on Qt's offscreen platform: its state file tracks every change."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture
def window(qtbot, tmp_path):
    from app.sandbox import Sandbox

    w = Sandbox(tmp_path / "state.json")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: (tmp_path / "state.json").exists())
    return w, tmp_path / "state.json"


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_state_file_follows_the_widgets(window, qtbot):
    from PySide6.QtCore import Qt

    w, path = window
    qtbot.mouseClick(w.click_button, Qt.MouseButton.LeftButton)
    qtbot.mouseDClick(w.double_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(w.right_button, Qt.MouseButton.RightButton)
    qtbot.keyClicks(w.line_edit, "abc")
    w.checkbox.setChecked(True)
    w.slider.setValue(42)
    w.menu_action.trigger()
    state = read(path)
    assert (state["clicks"], state["double_clicks"], state["right_clicks"]) == (1, 1, 1)
    assert (state["line_edit"], state["checked"], state["slider"]) == ("abc", True, 42)
    assert state["menu_action_count"] == 1
    assert "clicks 1" in w.status.text()


def test_layout_is_fixed_and_reported(window):
    from app.sandbox import WINDOW_POS, WINDOW_SIZE

    w, path = window
    rects = read(path)["widgets"]
    assert (rects["window"]["width"], rects["window"]["height"]) == WINDOW_SIZE
    # Exactly WINDOW_POS under X without a window manager; offscreen adds a fake frame.
    assert abs(rects["window"]["x"] - WINDOW_POS[0]) <= 10
    assert abs(rects["window"]["y"] - WINDOW_POS[1]) <= 10
    win = rects["window"]
    for name, r in rects.items():  # every target lies inside the window
        assert win["x"] <= r["x"] and r["x"] + r["width"] <= win["x"] + win["width"], name
        assert win["y"] <= r["y"] and r["y"] + r["height"] <= win["y"] + win["height"], name
    handle, slider = rects["slider_handle"], rects["slider"]
    assert slider["x"] <= handle["x"] < slider["x"] + slider["width"] // 4  # value 0: left end


def test_state_is_written_atomically(window, tmp_path):
    w, path = window
    w.line_edit.setText("x" * 1000)
    assert read(path)["line_edit"] == "x" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp files left


def test_task_window_mirrors_its_state_to_the_file(qtbot, tmp_path):
    from PySide6.QtCore import Qt

    from agent.tasks import generate
    from app.sandbox import task_window

    seed = next(s for s in range(100) if generate(s).skill == "click")
    path = tmp_path / "task.json"
    w = task_window(seed, path)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: path.exists() and read(path)["visible"])
    state = read(path)
    task = generate(seed)
    assert state["task_seed"] == seed and w.windowTitle() == task.instruction
    assert state["title"] == task.instruction
    win = state["window"]
    assert (win["width"], win["height"]) == (task.layout.width, task.layout.height)
    target = task.goal.events[0]["widget"]
    qtbot.mouseClick(w.widgets[target], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(e["widget"] == target for e in read(path)["events"]))
    assert [p.name for p in tmp_path.iterdir()] == ["task.json"]


def test_sandbox_command_refuses_a_negative_seed(capsys):
    from app.commands.sandbox import main

    with pytest.raises(SystemExit) as exc:
        main(["--task-seed", "-3"])
    assert exc.value.code == 2
    assert "non-negative" in capsys.readouterr().err


def test_welcome_practice_task_fills_in_the_instruction(qtbot, tmp_path, monkeypatch):
    """The welcome screen's button opens a practice task's window (a real child process,
    ended here) and puts its instruction in the task box, ready to Run."""
    import os
    import signal

    from agent.settings import Settings
    from agent.tasks import generate
    from app.commands.gui import build_window
    from app.practice_actions import open_practice_task

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "config"))
    settings = Settings(runs_dir=str(tmp_path / "runs"))
    settings.save()
    win = build_window(settings)
    qtbot.addWidget(win)
    win.show()
    assert win.welcome_shown()
    assert win.welcome.practice_button.text() == "Try a practice task"
    from PySide6.QtCore import SIGNAL

    assert win.welcome.receivers(SIGNAL("try_practice_task()")) == 1  # wired to the controller
    task, pid = open_practice_task(win.controller, seed=42)
    try:
        assert pid is not None
        assert win.task_panel.task() == generate(42).instruction == task.instruction
        assert not win.welcome_shown()
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
