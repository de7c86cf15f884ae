"""Quitting the app at every phase of a step ends the run promptly — no deadlock between
the GUI thread and the worker — and the control strip stays on screen while the screen
settles after an action.

The run's screen is in memory, but it asks the app's real WindowHider to hide its
windows around the capture and the settle wait and to keep them out of an action's way,
exactly where DesktopEnv does. The test quits as the application does
(Controller.shutdown from aboutToQuit) the moment the worker reaches the phase, just
before the worker's request to the GUI thread for that phase.
"""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("pytestqt")

from agent import actions as A  # noqa: E402
from agent.memenv import MemoryEnv  # noqa: E402
from agent.policies import ScriptPolicy  # noqa: E402
from agent.settings import Settings  # noqa: E402
from agent.trajectory import load_run  # noqa: E402

W, H = 640, 360
CLICK = "Thought: Click.\nAction: click(start_box='(100,100)')"
CLOSE = "Thought: Close it.\nAction: hotkey(key='alt f4')"
ASK = "Thought: Ask.\nAction: call_user(content='Which file?')"
PHASES = ["capture", "model", "before_action", "execute", "settle", "confirm", "call_user"]


class PhaseEnv(MemoryEnv):
    """The in-memory screen, calling the app's hider where DesktopEnv does; `entered`
    is set when the worker reaches `phase` (then it goes on into it)."""

    def __init__(self, hider, phase: str):
        super().__init__(W, H)
        self.hider, self.phase = hider, phase
        self.entered = threading.Event()

    def reach(self, phase: str) -> None:
        if phase == self.phase:
            self.entered.set()
            time.sleep(0.2)  # the GUI thread is quitting by now, before our request

    def observe(self):
        self.reach("capture")
        with self.hider.hide_windows():
            return super().observe()

    def execute(self, action):
        self.reach("before_action")
        self.hider.keep_clear(action)
        self.reach("execute")
        result = super().execute(action)
        self.reach("settle")
        with self.hider.settling():
            time.sleep(0.05)
        return result


class PhasePolicy(ScriptPolicy):
    def __init__(self, replies, env_holder: dict):
        super().__init__(replies)
        self.env_holder = env_holder

    def chat(self, messages, *, on_text=None, **options):
        env = self.env_holder["env"]
        env.reach("model")
        reply = super().chat(messages, on_text=on_text, **options)
        if CLOSE in reply.text:
            env.reach("confirm")
        if ASK in reply.text:
            env.reach("call_user")
        return reply


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    from app.commands.gui import build_window

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "config"))
    settings = Settings(runs_dir=str(tmp_path / "runs"), model="scripted", safety="normal")
    settings.save()
    holder: dict = {}

    def env_factory():
        holder["env"] = PhaseEnv(holder["window"].controller.hider, holder["phase"])
        return holder["env"]

    win = build_window(settings, env_factory=env_factory)
    win.holder = holder
    holder["window"] = win

    def end_run(w) -> None:
        if w.controller.worker is not None:
            w.controller.stop()
            qtbot.waitUntil(lambda: w.controller.worker is None, timeout=30_000)

    qtbot.addWidget(win, before_close_func=end_run)
    win.show()
    return win


@pytest.fixture(scope="module")
def dialect():
    from agent.dialects import get_dialect

    dialect = get_dialect("uitars-1.5")
    dialect.model_size(W, H)  # imports the resizer once, outside the timings
    return dialect


@pytest.mark.parametrize("phase", PHASES)
def test_quitting_at_every_phase_of_a_step_ends_the_run(qtbot, window, dialect, phase):
    c, holder = window.controller, window.holder
    holder["phase"] = phase
    c.hider.settle_s = 0.0
    replies = {"confirm": [CLOSE], "call_user": [ASK]}.get(phase, [CLICK] * 20)
    policy = PhasePolicy(replies, holder)
    assert c.start_run("quit at " + phase, policy=policy, dialect=dialect)
    # The GUI thread serves events until the worker is at the phase, then quits while the
    # worker's request of that phase (if it makes one) is still to come.
    qtbot.waitUntil(holder["env"].entered.is_set, timeout=30_000)
    started = time.monotonic()
    assert c.shutdown(timeout_ms=30_000), f"the run did not end when quitting at {phase}"
    assert time.monotonic() - started < 10
    qtbot.waitUntil(lambda: c.worker is None, timeout=10_000)
    assert c.last_outcome == "stopped"
    assert load_run(c.last_run_dir).outcome == "stopped"
    assert c.hider.unanswered_count == 0  # every request was served, none timed out


def test_a_closed_hider_never_waits_for_the_gui_thread(qtbot, window):
    hider = window.controller.hider
    hider.settle_s = 0.0
    hider.close()
    done = threading.Event()

    def capture():
        with hider.hide_windows():
            pass
        hider.keep_clear(A.Click(A.Point(0, 0), screen=A.Point(5, 5)))
        done.set()

    thread = threading.Thread(target=capture)
    thread.start()
    assert done.wait(5), "a capture waited for the GUI thread after the app began quitting"
    thread.join()


def test_an_unanswered_request_times_out_instead_of_hanging(qtbot, window):
    hider = window.controller.hider
    hider.settle_s, hider.answer_timeout_s = 0.0, 0.3
    done = threading.Event()

    def capture():
        with hider.hide_windows():
            pass
        done.set()

    thread = threading.Thread(target=capture)
    thread.start()
    assert done.wait(5)  # this (GUI) thread served nothing meanwhile
    thread.join()
    assert hider.unanswered_count == 1
    qtbot.waitUntil(lambda: window.isVisible(), timeout=5000)  # hidden, then shown again


def test_the_control_strip_stays_on_screen_while_the_screen_settles(qtbot, window):
    hider, strip = window.controller.hider, window.strip
    hider.settle_s = 0.0
    strip.show()
    qtbot.waitUntil(strip.isVisible)
    seen: dict = {}

    def worker():
        with hider.hide_windows():  # the screenshot for the model: nothing of ours
            seen["capture"] = (window.isVisible(), strip.isVisible())
        with hider.settling() as kept:  # after an action: Stop stays reachable
            seen["settle"] = (window.isVisible(), strip.isVisible(), kept)
        seen["done"] = True

    thread = threading.Thread(target=worker)
    thread.start()
    qtbot.waitUntil(lambda: seen.get("done") is True, timeout=10_000)
    thread.join()
    assert seen["capture"] == (False, False)
    window_visible, strip_visible, kept = seen["settle"]
    assert not window_visible and strip_visible
    g = strip.frameGeometry()
    assert kept == [(g.x(), g.y(), g.width(), g.height())]
    qtbot.waitUntil(lambda: window.isVisible() and strip.isVisible(), timeout=5000)


def test_the_settle_check_ignores_the_control_strip():
    from PIL import Image

    from agent.desktop.env import blank_regions
    from agent.frames import Rect

    image = Image.new("RGB", (200, 100), (255, 255, 255))  # a 2x HiDPI monitor at x=-100
    out = blank_regions(image, Rect(-100, 0, 100, 50), [(-90, 10, 20, 10)])
    assert out.getpixel((20, 20)) == (0, 0, 0) and out.getpixel((59, 39)) == (0, 0, 0)
    assert out.getpixel((70, 20)) == (255, 255, 255) and out.getpixel((20, 50)) == (255,) * 3
