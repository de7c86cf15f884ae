"""Keys held by `press` are released however a run ends: finish, stop, error, an
exception, the generator closed early, and process exit. The executor runs for real;
only pyautogui is replaced by a keyboard that records what reached it (no display), and
one test drives the real keyboard into the practice sandbox under Xvfb."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from agent import actions as A
from agent.desktop import executor as executor_module
from agent.desktop.executor import Executor
from agent.frames import Rect
from agent.loop import Agent
from agent.memenv import MemoryEnv
from agent.policies import ScriptPolicy
from agent.safety import SafetyPolicy

ROOT = Path(__file__).resolve().parents[1]
SCREEN = Rect(0, 0, 640, 360)
PRESS_CTRL = "Thought: Hold ctrl.\nAction: press(key='ctrl')"
FINISH = "Thought: Done.\nAction: finished(content='ok')"


class RecordingKeyboard:
    """The part of pyautogui the executor's key paths use; records every event."""

    KEYBOARD_KEYS = {"ctrl", "shift", "alt", "a", "c", "v", "w", "enter", "f4", "esc",
                     "command", "option"}

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.down: set[str] = set()

    def keyDown(self, key):  # noqa: N802 - pyautogui's name
        self.events.append(("down", key))
        self.down.add(key)

    def keyUp(self, key):  # noqa: N802 - pyautogui's name
        self.events.append(("up", key))
        self.down.discard(key)

    def hotkey(self, *keys):
        self.events.append(("hotkey", *keys))

    def click(self, x, y):
        self.events.append(("click", x, y))


@pytest.fixture
def keyboard(monkeypatch):
    kb = RecordingKeyboard()
    monkeypatch.setattr(executor_module, "load_pyautogui", lambda: kb)
    return kb


def test_press_holds_and_release_held_lets_go_last_first(keyboard):
    ex = Executor()
    assert ex.execute(A.Press(("ctrl", "shift")), SCREEN).ok
    assert ex.held_keys == ("ctrl", "shift") and keyboard.down == {"ctrl", "shift"}
    assert ex.release_held() == ["shift", "ctrl"]
    assert keyboard.events[-2:] == [("up", "shift"), ("up", "ctrl")]
    assert keyboard.down == set() and ex.held_keys == ()
    assert ex.release_held() == []  # nothing held: nothing sent


def test_a_hotkey_leaves_held_keys_down(keyboard):
    ex = Executor()
    ex.execute(A.Press(("ctrl",)), SCREEN)
    assert ex.execute(A.Hotkey(("ctrl", "c")), SCREEN).details["held"] == ["ctrl"]
    assert keyboard.events[-1] == ("hotkey", "c")  # ctrl is already down, and stays down
    assert keyboard.down == {"ctrl"}
    ex.execute(A.Release(("ctrl",)), SCREEN)
    assert ex.held_keys == () and keyboard.down == set()


@pytest.mark.parametrize("platform", ["darwin", "linux", "win32"])
def test_safety_judges_exactly_the_chord_the_executor_presses(keyboard, monkeypatch, platform):
    from agent.keys import to_platform

    monkeypatch.setattr(sys, "platform", platform)
    action = A.Hotkey(("ctrl", "alt", "esc"))
    Executor().execute(action, SCREEN)
    pressed = keyboard.events[-1][1:]
    assert frozenset(pressed) == to_platform(action.keys)
    why = SafetyPolicy("normal").risk(action)
    if platform == "darwin":
        assert pressed == ("command", "option", "esc") and "Force Quit" in why
    else:
        assert pressed == ("ctrl", "alt", "esc") and "xkill" in why


class KeyboardEnv:
    """The in-memory screen for observing, the real Executor for acting."""

    def __init__(self, executor: Executor, fail_on: type | None = None):
        self.screen = MemoryEnv(SCREEN.width, SCREEN.height)
        self.executor = executor
        self.fail_on = fail_on

    def observe(self):
        return self.screen.observe()

    def execute(self, action):
        if self.fail_on is not None and isinstance(action, self.fail_on):
            raise OSError("the X server went away")
        self.screen.execute(action)
        return self.executor.execute(action, SCREEN)

    def release_held_keys(self):
        return self.executor.release_held()


def agent_for(env, replies, **kw) -> Agent:
    from agent.dialects import get_dialect

    return Agent(ScriptPolicy(replies), env, get_dialect("uitars-1.5"),
                 safety=SafetyPolicy("off"), **kw)


CLICK = "Thought: Click.\nAction: click(start_box='(10,10)')"
BROKEN = "Thought: ?\nAction: nonsense"


@pytest.mark.parametrize(
    ("replies", "fail_on", "outcome"),
    [
        ([PRESS_CTRL, FINISH], None, "finished"),
        ([PRESS_CTRL, BROKEN, BROKEN, BROKEN], None, "error"),
        ([PRESS_CTRL, CLICK], A.Click, "error"),  # executing raised
        ([PRESS_CTRL], None, "error"),  # the model failed (script exhausted)
        ([PRESS_CTRL, CLICK, CLICK, CLICK], None, "max_steps"),
    ],
    ids=["finished", "parse-errors", "execute-raised", "model-failed", "max-steps"],
)
def test_every_ending_releases_the_held_keys(keyboard, replies, fail_on, outcome):
    ex = Executor()
    agent = agent_for(KeyboardEnv(ex, fail_on), replies, max_steps=4, max_parse_retries=3)
    list(agent.run("hold ctrl"))
    assert agent.outcome == outcome
    assert ("down", "ctrl") in keyboard.events and keyboard.events[-1] == ("up", "ctrl")
    assert keyboard.down == set() and ex.held_keys == ()


def test_stopping_releases_the_held_keys(keyboard):
    ex = Executor()
    agent = agent_for(KeyboardEnv(ex), [PRESS_CTRL, CLICK, CLICK, FINISH])
    for step in agent.run("hold ctrl"):
        if step.index == 0:
            assert keyboard.down == {"ctrl"}
            threading.Thread(target=agent.stop).start()
            agent.stop()
    assert agent.outcome == "stopped"
    assert keyboard.down == set()


def test_closing_the_run_early_releases_the_held_keys(keyboard):
    ex = Executor()
    agent = agent_for(KeyboardEnv(ex), [PRESS_CTRL, CLICK, FINISH])
    steps = agent.run("hold ctrl")
    next(steps)
    assert keyboard.down == {"ctrl"}
    steps.close()  # the caller raised, or dropped the run
    assert keyboard.down == set() and agent.outcome == "stopped"


def test_process_exit_releases_the_held_keys(tmp_path):
    """A program that crashes with a key held still lets go of it on the way out."""
    script = textwrap.dedent(
        """
        import sys
        from agent import actions as A
        from agent.desktop import executor as ex_mod
        from agent.frames import Rect

        class Keyboard:
            KEYBOARD_KEYS = {"ctrl"}
            def keyDown(self, key): print("down", key, flush=True)
            def keyUp(self, key): print("up", key, flush=True)

        ex_mod.load_pyautogui = lambda: Keyboard()
        ex = ex_mod.Executor()
        ex.execute(A.Press(("ctrl",)), Rect(0, 0, 10, 10))
        raise RuntimeError("the caller crashed")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "the caller crashed" in done.stderr
    assert done.stdout.split("\n")[:2] == ["down ctrl", "up ctrl"]


@pytest.mark.display
def test_a_held_shift_is_really_released_on_the_x_server(xvfb_display, tmp_path):
    from tests.sandbox_proc import centre, sandbox, wait_state

    state_file = tmp_path / "state.json"
    with sandbox(state_file) as state:
        ex = Executor()
        point = A.Point(*centre(state, "click_button"))
        ex.execute(A.Press(("shift",)), Rect(0, 0, 1280, 800))
        assert ex.execute(A.Click(point, screen=point), Rect(0, 0, 1280, 800)).ok
        assert ex.release_held() == ["shift"]
        assert ex.execute(A.Click(point, screen=point), Rect(0, 0, 1280, 800)).ok
        final = wait_state(state_file, lambda s: s["clicks"] == 2)
        assert final["click_modifiers"] == [["shift"], []]


def test_the_app_worker_releases_held_keys_before_it_reports_the_end(qapp, keyboard, tmp_path,
                                                                     monkeypatch):
    """Even when recording a step fails (a full disk) after a key was pressed."""
    from agent.dialects import get_dialect
    from agent.trajectory import Recorder
    from app.worker import RunRequest, RunWorker

    def full_disk(self, step):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Recorder, "write_step", full_disk)
    ex = Executor()
    request = RunRequest(task="hold ctrl", policy=ScriptPolicy([PRESS_CTRL, FINISH]),
                         env=KeyboardEnv(ex), dialect=get_dialect("uitars-1.5"), safety="off",
                         runs_dir=tmp_path / "runs")
    worker = RunWorker(request)
    ended = []
    worker.run_ended.connect(lambda outcome, *_: ended.append((outcome, set(keyboard.down))))
    worker.run()  # on this thread: the signals are delivered directly
    assert ("down", "ctrl") in keyboard.events
    assert ended == [("error", set())]
