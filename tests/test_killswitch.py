"""The kill switch: a real key event through the X server stops the agent."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.desktop import DEFAULT_HOTKEY, KillSwitch
from tests.sandbox_proc import ROOT, centre, read_state, sandbox, wait_state


def press(combo: str) -> None:
    """A key chord injected through XTEST, as if typed on a keyboard."""
    subprocess.run(["xdotool", "key", "--clearmodifiers", combo], check=True, timeout=10)


def test_hotkey_and_callback_are_required():
    with pytest.raises(ValueError, match="non-empty"):
        KillSwitch("  ", lambda: None)
    with pytest.raises(ValueError, match="on_stop"):
        KillSwitch(DEFAULT_HOTKEY, None)


@pytest.mark.display
def test_default_hotkey_fires_and_near_misses_do_not(xvfb_display):
    stopped = threading.Event()
    with KillSwitch(on_stop=stopped.set) as switch:
        assert switch.running
        press("ctrl+alt+s")  # without shift: somebody's ordinary shortcut
        press("shift+s")
        assert not stopped.wait(0.5)
        press("ctrl+alt+shift+s")
        assert stopped.wait(30), "the kill switch did not see the key chord"
    assert not switch.running


@pytest.mark.display
def test_hotkey_is_configurable_and_validated(xvfb_display):
    stopped = threading.Event()
    with KillSwitch("<ctrl>+<alt>+k", stopped.set):
        press("ctrl+alt+shift+s")
        assert not stopped.wait(0.3)
        press("ctrl+alt+k")
        assert stopped.wait(30)
    with pytest.raises(ValueError, match="invalid stop hotkey"):
        KillSwitch("<ctrl>+<nosuchkey>", stopped.set).start()


SCRIPT_STEPS = 6


def _script(state: dict, path: Path) -> None:
    """Click the button, then wait; repeated. Coordinates: the screen is 1288x812 wide in
    UI-TARS-1.5 model space (smart_resize of 1280x800 with factor 28)."""
    x, y = centre(state, "click_button")
    mx, my = round(x * 1288 / 1280), round(y * 812 / 800)
    # Three waits (15 s) after the click: the chord, however late a loaded machine delivers
    # it, arrives while this step still waits, and only an interrupted wait ends quickly.
    step = (
        f"Thought: click and wait\nAction: click(start_box='({mx},{my})')\n\n"
        "wait()\n\nwait()\n\nwait()"
    )
    path.write_text("\n---\n".join([step] * SCRIPT_STEPS), encoding="utf-8")


@pytest.mark.display
def test_kill_switch_stops_a_scripted_run_before_its_next_action(xvfb_display, tmp_path):
    state_file, script, runs = tmp_path / "state.json", tmp_path / "script.txt", tmp_path / "runs"
    with sandbox(state_file) as state:
        _script(state, script)
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "press the button", "--policy",
             f"script:{script}", "--dialect", "uitars-1.5", "--env", "desktop",
             "--record", str(runs), "--settle-timeout", "0.5"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "DESKPILOT_CONFIG_DIR": str(tmp_path / "cfg")},
        )
        try:
            # Generous: a loaded machine starts the run and delivers the click slowly.
            wait_state(state_file, lambda s: s["clicks"] >= 1, timeout=90)
            started = time.monotonic()
            press("ctrl+alt+shift+s")  # arrives during the first step's 15 s of wait()
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
        stop_took = time.monotonic() - started
        assert "outcome: stopped" in out, out
        # well inside the 15 s the waits would take: the stop cut the wait short
        assert stop_took < 10, f"stopping took {stop_took:.1f}s"
        assert read_state(state_file)["clicks"] == 1

    from agent.trajectory import load_run

    (run_dir,) = runs.iterdir()
    run = load_run(run_dir)
    assert run.meta["outcome"] == "stopped"
    assert 1 <= len(run.steps) < SCRIPT_STEPS
    clicks = [a for step in run.steps for a, r in zip(step["actions"], step["results"])
              if a["type"] == "click" and r["ok"]]
    assert len(clicks) == 1  # the record agrees: no action ran after the key chord
