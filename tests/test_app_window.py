"""The app window driven like a person would (pytest-qt, offscreen), with a scripted model
(agent.policies.ScriptPolicy) on an in-memory screen (agent.memenv.MemoryEnv).

Real components throughout: the real loop, dialect parser, safety policy, recorder and
trajectory loader; only the model's replies are scripted and the screen is in memory.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QElapsedTimer, Qt, QTimer  # noqa: E402

from agent.memenv import MemoryEnv  # noqa: E402
from agent.policies import ScriptPolicy  # noqa: E402
from agent.settings import Settings  # noqa: E402
from agent.trajectory import load_run  # noqa: E402

W, H = 640, 360  # uitars-1.5 sees 644x364: model (322, 182) is the screen centre


def click(x: int, y: int) -> str:
    return f"Thought: I click at {x},{y}.\nAction: click(start_box='({x},{y})')"


def finished(content: str = "done") -> str:
    return f"Thought: Done.\nAction: finished(content='{content}')"


class SlowPolicy(ScriptPolicy):
    """A scripted model that takes `delay` seconds per reply, streaming as it goes."""

    def __init__(self, replies, delay: float):
        super().__init__(replies)
        self.delay = delay

    def chat(self, messages, *, on_text=None, **options):
        time.sleep(self.delay)
        return super().chat(messages, on_text=on_text, **options)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "config"))
    s = Settings(runs_dir=str(tmp_path / "runs"), model="scripted", safety="normal")
    s.save()
    return s


@pytest.fixture(scope="module")
def dialect():
    from agent.dialects import get_dialect

    dialect = get_dialect("uitars-1.5")
    dialect.model_size(W, H)  # imports qwen_vl_utils (and torch) once, outside the timings
    return dialect


@pytest.fixture
def window(qtbot, settings):
    from app import theme
    from app.commands.gui import build_window

    theme.apply(qtbot_app())
    envs: list[MemoryEnv] = []

    def env_factory():
        envs.append(MemoryEnv(W, H))
        return envs[-1]

    win = build_window(settings, env_factory=env_factory)
    win.envs = envs

    def end_run(w) -> None:
        """pytest-qt deletes the window after a test; a failed test may leave a run going,
        and deleting its QThread while it runs aborts the process."""
        if w.controller.worker is not None:
            w.controller.stop()
            qtbot.waitUntil(lambda: w.controller.worker is None, timeout=30_000)

    qtbot.addWidget(win, before_close_func=end_run)
    win.show()
    return win


def qtbot_app():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance()


def wait_ended(qtbot, controller, timeout=10_000):
    qtbot.waitUntil(lambda: controller.worker is None, timeout=timeout)


def test_run_pause_resume_stop_then_listed_and_reopened(qtbot, window, dialect):
    c = window.controller
    replies = [click(100 + 12 * i, 80 + 7 * i) for i in range(40)]
    policy = SlowPolicy(replies, delay=0.05)
    window.task_panel.input.setPlainText("tidy the desk")
    assert c.start_run(window.task_panel.task(), policy=policy, dialect=dialect)
    assert not window.task_panel.run_button.isEnabled()

    qtbot.waitUntil(lambda: len(window.timeline.views()) >= 2, timeout=15_000)
    first = window.timeline.views()[0]
    assert first.actions[0].name == "click" and first.thought.startswith("I click at 100,80")
    from app.views.rendering import step_image

    painted = step_image(first)
    x, y = first.actions[0].screen.rounded()
    assert painted.pixelColor(x, y) != first.image.convert("RGB").getpixel((x, y))

    qtbot.mouseClick(window.task_panel.pause_button, Qt.MouseButton.LeftButton)
    assert c.paused and window.task_panel.pause_button.text() == "Resume"
    qtbot.wait(300)  # the step in flight may still finish
    held = len(window.timeline.views())
    qtbot.wait(400)
    assert len(window.timeline.views()) == held, "the run kept going while paused"
    # paused, so no new observation replaces it: the live view shows the last finished
    # step's screenshot (full size, not the model's resized copy) with its overlay
    shown = window.live.screen.image()
    assert shown is not None and shown.width() == W

    qtbot.mouseClick(window.task_panel.pause_button, Qt.MouseButton.LeftButton)
    assert not c.paused
    qtbot.waitUntil(lambda: len(window.timeline.views()) >= held + 2, timeout=15_000)

    qtbot.mouseClick(window.task_panel.stop_button, Qt.MouseButton.LeftButton)
    wait_ended(qtbot, c)
    assert c.last_outcome == "stopped"
    assert window.task_panel.run_button.isEnabled()
    done = len(window.timeline.views())
    assert done < len(replies)

    run_dir = c.last_run_dir
    assert run_dir is not None and run_dir in window.runs.paths()
    run = load_run(run_dir)
    assert run.outcome == "stopped" and len(run.steps) == done and run.task == "tidy the desk"
    row = window.runs.paths().index(run_dir)
    assert window.runs.table.item(row, 2).text() == "stopped"
    assert window.runs.table.item(row, 3).text() == str(done)

    window.timeline.clear_steps()
    window.runs.select(run_dir)
    qtbot.mouseClick(window.runs.open_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.timeline.views()) == done, timeout=15_000)
    inspected = window.inspector.view
    assert inspected is not None and inspected.index == 0
    assert inspected.actions[0].screen == first.actions[0].screen
    assert window.inspector.screen.image() is not None
    assert "click(start_box='(100,80)')" in window.inspector.reply.toPlainText()
    assert window.tabs.currentWidget() is window.inspector
    assert "tidy the desk" in window.task_panel.recent.item(0).text()
    assert Settings.load().recent_tasks[0] == "tidy the desk"  # persisted


def _dialog(controller, kind):
    d = controller._dialog
    return d if d is not None and type(d).__name__ == kind and d.isVisible() else None


@pytest.mark.parametrize("allow", [True, False])
def test_confirmation_dialog_answered_from_the_test(qtbot, window, dialect, allow):
    c = window.controller
    replies = ["Thought: Close it.\nAction: hotkey(key='alt f4')", finished()]
    assert c.start_run("close the window", policy=ScriptPolicy(replies), dialect=dialect)
    qtbot.waitUntil(lambda: _dialog(c, "ConfirmDialog") is not None, timeout=15_000)
    dialog = _dialog(c, "ConfirmDialog")
    assert "hotkey alt+f4" in dialog.what.text() and "alt+f4" in dialog.why.text()
    button = dialog.allow_button if allow else dialog.deny_button
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    wait_ended(qtbot, c)
    env = window.envs[-1]
    if allow:
        assert c.last_outcome == "finished"
        assert [a.name for a in env.executed] == ["hotkey"]
        assert window.timeline.views()[0].decisions[0]["verdict"] == "confirmed"
    else:
        assert c.last_outcome == "refused"
        assert env.executed == []
        assert window.timeline.views()[0].decisions[0]["verdict"] == "refused"
    assert load_run(c.last_run_dir).outcome == c.last_outcome


def test_call_user_reply_box_continues_the_run_with_the_answer(qtbot, window, dialect):
    c = window.controller
    replies = [
        "Thought: I need to know.\nAction: call_user(content='Which file should I open?')",
        click(322, 182),
        finished("opened"),
    ]
    policy = ScriptPolicy(replies)
    assert c.start_run("open my notes", policy=policy, dialect=dialect)
    qtbot.waitUntil(lambda: _dialog(c, "ReplyDialog") is not None, timeout=15_000)
    dialog = _dialog(c, "ReplyDialog")
    dialog.reply.setPlainText("notes.txt")
    qtbot.mouseClick(dialog.send_button, Qt.MouseButton.LeftButton)
    # under "normal" safety the first action after call_user needs the person's OK
    qtbot.waitUntil(lambda: _dialog(c, "ConfirmDialog") is not None, timeout=15_000)
    qtbot.mouseClick(_dialog(c, "ConfirmDialog").allow_button, Qt.MouseButton.LeftButton)
    wait_ended(qtbot, c)
    assert c.last_outcome == "finished"
    sent = str(policy.calls[1])
    assert "notes.txt" in sent  # the answer is in the conversation the model saw next
    assert [a.name for a in window.envs[-1].executed] == ["click"]


def test_ui_stays_responsive_during_a_slow_policy(qtbot, window, dialect):
    c = window.controller
    gaps: list[int] = []
    clock = QElapsedTimer()
    clock.start()
    timer = QTimer()
    timer.setInterval(20)

    def tick():
        gaps.append(clock.restart())

    timer.timeout.connect(tick)
    timer.start()
    policy = SlowPolicy([click(100, 100), click(200, 150), finished()], delay=0.5)
    assert c.start_run("slow task", policy=policy, dialect=dialect)
    wait_ended(qtbot, c)
    timer.stop()
    assert c.last_outcome == "finished"
    assert len(gaps) > 40  # the timer really ran through the ~1.5 s of model time
    assert max(gaps[1:]) < 200, f"event loop blocked for {max(gaps[1:])} ms"


def test_closing_the_window_during_a_run_stops_it_and_keeps_the_trajectory(
    qtbot, window, dialect
):
    c = window.controller
    policy = SlowPolicy([click(100 + i, 100) for i in range(30)], delay=0.1)
    assert c.start_run("long task", policy=policy, dialect=dialect)
    qtbot.waitUntil(lambda: len(window.timeline.views()) >= 1, timeout=15_000)
    window.close()
    wait_ended(qtbot, c)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=2000)
    run = load_run(c.last_run_dir)
    assert run.outcome == "stopped" and len(run.steps) >= 1


def test_errors_appear_in_the_window(qtbot, window):
    c = window.controller
    window.model_panel.backend.setCurrentIndex(window.model_panel.backend.findData("local"))
    assert not c.start_run("anything")  # no model loaded
    assert "No model is loaded" in window.banner.message()

    def oom(progress):
        progress(10, 100)
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    c.load_model(loader=oom)
    qtbot.waitUntil(lambda: "Out of GPU memory" in window.banner.message(), timeout=15_000)
    assert window.model_panel.load_button.isEnabled()
    assert "Out of GPU memory" in window.model_panel.load_status.text()


def test_model_loading_reports_progress_without_blocking(qtbot, window):
    c = window.controller
    seen: list[int] = []
    window.model_panel.progress.valueChanged.connect(seen.append)

    class Engine:
        name = "tiny-engine"
        config_dict = {
            "model_type": "qwen2_5_vl",
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        }

    def loader(progress):
        total = 4 * 1024**3  # larger than a 32-bit int: the signal must carry it
        for k in range(1, 5):
            time.sleep(0.05)
            progress(k * total // 4, total)
        return Engine()

    c.load_model(loader=loader)
    qtbot.waitUntil(lambda: c.policy is not None, timeout=15_000)
    assert 250 in seen and 500 in seen and seen[-1] == 1000
    assert "tiny-engine loaded" in window.model_panel.load_status.text()
    assert c.detected_dialect == "uitars-1.5"
    assert "tiny-engine" in window.model_status.text()


def test_first_launch_shows_the_welcome_screen(qtbot, tmp_path, monkeypatch):
    from app.commands.gui import build_window

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "config"))
    win = build_window(Settings(runs_dir=str(tmp_path / "runs")))
    qtbot.addWidget(win)
    assert win.welcome_shown()
    qtbot.mouseClick(win.welcome.remote_button, Qt.MouseButton.LeftButton)
    assert not win.welcome_shown() and win.tabs.currentWidget() is win.model_panel
    assert win.model_panel.values()["backend"] == "remote"


def test_settings_dialog_persists(qtbot, window):
    c = window.controller
    dialog = c.open_settings()
    dialog.max_steps.setValue(7)
    dialog.safety.setCurrentIndex(dialog.safety.findData("strict"))
    dialog.accept()
    loaded = Settings.load()
    assert loaded.max_steps == 7 and loaded.safety == "strict"


def test_hide_windows_from_a_worker_thread(qtbot, window):
    hider = window.controller.hider
    hider.settle_s = 0.0
    seen: dict[str, object] = {}

    def capture():
        with hider.hide_windows():
            seen["hidden"] = [w.windowTitle() for w in hider.hidden()]
            seen["visible_inside"] = window.isVisible()
        seen["done"] = True

    thread = threading.Thread(target=capture)
    thread.start()
    qtbot.waitUntil(lambda: seen.get("done") is True, timeout=5000)
    thread.join()
    assert "deskpilot" in seen["hidden"]
    assert seen["visible_inside"] is False
    assert window.isVisible()


def test_windows_move_out_of_the_way_of_an_action(qtbot, window):
    from agent import actions as A

    hider = window.controller.hider
    strip = window.strip
    window.hide()  # as during a run: only the control strip is on screen
    strip.show()
    qtbot.waitUntil(strip.isVisible)
    target = strip.frameGeometry().center()
    aimed = A.Click(A.Point(0, 0), screen=A.Point(target.x(), target.y()))
    elsewhere = A.Click(A.Point(0, 0), screen=A.Point(target.x(), target.y() - 2000))
    done: dict[str, bool] = {}

    def act(action):
        hider.keep_clear(action)  # from a worker thread, as DesktopEnv calls it
        done[action.screen.y] = True

    for action in (elsewhere, aimed):
        thread = threading.Thread(target=act, args=(action,))
        thread.start()
        qtbot.waitUntil(lambda a=action: a.screen.y in done, timeout=5000)
        thread.join()
    assert hider.moved_count == 1, "only the action aimed at the strip moves it"
    assert strip.isVisible(), "the strip stays available for Stop"
    assert not strip.frameGeometry().contains(target)


def test_runs_browser_report_export(qtbot, window, dialect, tmp_path):
    c = window.controller
    assert c.start_run("quick", policy=ScriptPolicy([click(50, 50), finished()]), dialect=dialect)
    wait_ended(qtbot, c)
    run_dir = c.last_run_dir
    out = tmp_path / "report.html"
    c.open_report(run_dir, out_html=str(out), open_it=False)
    qtbot.waitUntil(lambda: out.exists(), timeout=10_000)
    assert "<img" in out.read_text(encoding="utf-8")
    export_dir = tmp_path / "export"
    c.export_runs([run_dir], "llamafactory", str(export_dir))
    qtbot.waitUntil(lambda: any(Path(export_dir).glob("*.json*")), timeout=10_000)


def test_no_display_gives_a_clear_message(monkeypatch, capsys):
    from app.commands import gui

    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(gui.sys, "platform", "linux")
    assert gui.main([]) == 2
    assert "No display" in capsys.readouterr().err


def test_demo_recording_failure_is_shown_and_state_resets(qtbot, window, monkeypatch):
    """Offscreen there is no X display, so record-demo exits with its own error: the app
    must show it and leave the recording state."""
    monkeypatch.delenv("DISPLAY", raising=False)
    c = window.controller
    c.toggle_demo_recording("")
    assert "Type the task" in window.banner.message() and not c.recording_demo
    c.toggle_demo_recording("open the settings")
    assert c.recording_demo
    assert "Recording" in window.task_panel.record_button.text()
    qtbot.waitUntil(lambda: not c.recording_demo, timeout=30_000)
    assert "Recording the demonstration failed" in window.banner.message()
    assert "display" in window.banner.message().lower()
    assert "Record a demonstration" in window.task_panel.record_button.text()


def test_replay_from_the_runs_browser_plays_the_recorded_replies(qtbot, window, dialect):
    c = window.controller
    replies = [click(120, 90), "Thought: Type.\nAction: type(content='hi')", finished("ok")]
    assert c.start_run("original", policy=ScriptPolicy(replies), dialect=dialect)
    wait_ended(qtbot, c)
    original = c.last_run_dir
    window.runs.select(original)
    qtbot.mouseClick(window.runs.replay_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: c.last_run_dir not in (None, original) and c.worker is None,
                    timeout=15_000)
    replayed = load_run(c.last_run_dir)
    assert replayed.outcome == "finished" and replayed.meta["backend"] == "replay"
    assert [s["reply"] for s in replayed.steps] == replies
    assert [a.name for a in window.envs[-1].executed] == ["click", "type"]


def test_dialect_detected_from_a_checkpoint_folder(qtbot, window, tmp_path):
    import json

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3_vl_moe"}))
    window.model_panel.model.setCurrentText(str(folder))
    assert "qwen3-vl" in window.model_panel.detected.text()
    (folder / "config.json").write_text("{not json")
    window.model_panel.model.setCurrentText(str(folder) + "/")
    assert "not found" in window.model_panel.detected.text()  # unreadable: detected at load


def test_remote_connection_check(qtbot, window):
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Models(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            body = json.dumps({"data": [{"id": "ui-tars-1.5-7b"}]}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    panel = window.model_panel
    try:
        panel.url.setText(f"http://127.0.0.1:{server.server_address[1]}/v1")
        qtbot.mouseClick(panel.check_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "ui-tars-1.5-7b" in panel.check_status.text(), timeout=10_000)
        assert "dialect uitars-1.5" in panel.check_status.text()
        panel.url.setText(f"http://127.0.0.1:{server.server_address[1]}/nothing")
        qtbot.mouseClick(panel.check_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "404" in panel.check_status.text(), timeout=10_000)
        assert "did not answer" in window.banner.message()
    finally:
        server.shutdown()


def test_remote_auto_dialect_comes_from_the_served_id_never_a_guess(qtbot, window):
    from app.controller import RunSetupError

    c, panel = window.controller, window.model_panel
    panel.backend.setCurrentIndex(panel.backend.findData("remote"))
    panel.dialect.setCurrentIndex(panel.dialect.findData("uitars-1.5"))  # the local page's
    panel.remote_dialect.setCurrentIndex(panel.remote_dialect.findData("auto"))
    panel.url.setText("http://127.0.0.1:9/v1")
    assert panel.values()["dialect"] == "auto"
    with pytest.raises(RunSetupError, match="Check connection"):
        c._dialect("remote")  # no model named, nothing checked: no silent UI-TARS
    panel.remote_model.setText("Qwen/Qwen3-VL-8B-Instruct")
    assert c._dialect("remote").name == "qwen3-vl"
    panel.remote_model.setText("my-finetune")
    with pytest.raises(RunSetupError, match="my-finetune"):
        c._dialect("remote")
    panel.remote_model.setText("")
    c.served_dialect = ("http://127.0.0.1:9/v1", "uitars-1.5")  # what a check found there
    assert c._dialect("remote").name == "uitars-1.5"
    panel.url.setText("http://127.0.0.1:10/v1")  # another server: that check does not count
    with pytest.raises(RunSetupError):
        c._dialect("remote")
    panel.remote_dialect.setCurrentIndex(panel.remote_dialect.findData("qwen3-vl"))
    assert c._dialect("remote").name == "qwen3-vl"  # picked by hand


def test_tray_and_strip_control_the_run_and_the_thought_streams(qtbot, window, dialect):
    c = window.controller
    streamed: list[str] = []
    policy = SlowPolicy([click(100 + 9 * i, 100) for i in range(30)], delay=0.05)
    assert c.start_run("watch it think", policy=policy, dialect=dialect)
    c.worker.text_streamed.connect(streamed.append)
    qtbot.waitUntil(lambda: len(window.timeline.views()) >= 1, timeout=15_000)
    assert len(streamed) > 1  # several fragments per reply, not one block at the end
    assert "".join(streamed).startswith("Thought: I click at 100,100.")

    window.tray.pause_action.trigger()
    assert c.paused and window.strip.pause_button.text() == "Resume"
    assert window.tray.resume_action.isEnabled() and not window.tray.pause_action.isEnabled()
    qtbot.mouseClick(window.strip.pause_button, Qt.MouseButton.LeftButton)  # resume
    assert not c.paused
    qtbot.mouseClick(window.strip.stop_button, Qt.MouseButton.LeftButton)
    wait_ended(qtbot, c)
    assert c.last_outcome == "stopped" and not window.tray.stop_action.isEnabled()
