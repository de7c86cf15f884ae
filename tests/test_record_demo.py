"""Human demonstrations: events -> actions (pure), and `deskpilot record-demo` under Xvfb."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from agent import actions as A
from agent.demo import Key, MouseButton, Wheel, drop_stop_chord, events_to_actions


def click(x, y, t, button="left"):
    return [MouseButton(x, y, button, True, t), MouseButton(x, y, button, False, t + 0.05)]


def keys(text, t, dt=0.05):
    out = []
    for i, ch in enumerate(text):
        name = "space" if ch == " " else ch.lower()
        out += [Key(name, ch, True, t + i * dt), Key(name, None, False, t + i * dt + 0.01)]
    return out


def chord(names, t):
    down = [Key(n, None, True, t + i * 0.01) for i, n in enumerate(names)]
    up = [Key(n, None, False, t + 0.1 + i * 0.01) for i, n in enumerate(reversed(names))]
    return down + up


def kinds(actions):
    return [a.action for a in actions]


def test_clicks_double_clicks_right_clicks_and_drags():
    events = (click(10, 10, 0.0) + click(11, 10, 0.2)  # double
              + click(50, 50, 1.0)  # single: too late for a triple
              + click(80, 80, 2.0, "right") + click(80, 80, 2.5, "middle")
              + [MouseButton(100, 100, "left", True, 3.0), MouseButton(300, 110, "left", False,
                                                                        3.5)])
    assert kinds(events_to_actions(events)) == [
        A.DoubleClick(A.Point(10, 10)), A.Click(A.Point(50, 50)), A.RightClick(A.Point(80, 80)),
        A.MiddleClick(A.Point(80, 80)), A.Drag(A.Point(100, 100), A.Point(300, 110))]


def test_far_apart_clicks_are_not_a_double_click():
    assert kinds(events_to_actions(click(10, 10, 0.0) + click(200, 10, 0.1))) == [
        A.Click(A.Point(10, 10)), A.Click(A.Point(200, 10))]


def test_wheel_notches_merge_per_direction_and_place():
    events = [Wheel(5, 5, 0, -1, 0.0), Wheel(5, 6, 0, -1, 0.1), Wheel(5, 6, 0, -1, 0.2),
              Wheel(5, 6, 1, 0, 0.3), Wheel(400, 6, 0, 1, 0.4)]
    assert kinds(events_to_actions(events)) == [
        A.Scroll("down", A.Point(5, 5), amount=3), A.Scroll("right", A.Point(5, 6), amount=1),
        A.Scroll("up", A.Point(400, 6), amount=1)]


def test_typing_merges_keys_and_hotkeys_stay_apart():
    events = (keys("Hi yoo", 0.0)
              + [Key("backspace", None, True, 0.5), Key("backspace", None, False, 0.51)]
              + keys("u", 0.6) + chord(["enter"], 0.7)
              + chord(["ctrl", "shift", "h"], 1.0)
              + [Key("shift", None, True, 1.5)] + keys("A", 1.55) + [Key("shift", None, False, 1.6)]
              + chord(["esc"], 2.0))
    assert kinds(events_to_actions(events)) == [
        A.Type("Hi you", enter=True), A.Hotkey(("ctrl", "shift", "h")), A.Type("A"),
        A.Hotkey(("esc",))]


def test_a_click_splits_typing_runs():
    events = keys("ab", 0.0) + click(9, 9, 0.5) + keys("cd", 1.0)
    assert kinds(events_to_actions(events)) == [A.Type("ab"), A.Click(A.Point(9, 9)),
                                                A.Type("cd")]


def test_the_stop_chord_is_not_recorded():
    events = keys("ok", 0.0) + [Key(n, None, True, 1 + i / 10)
                                for i, n in enumerate(["ctrl", "alt", "shift", "s"])]
    assert kinds(events_to_actions(drop_stop_chord(events, {"ctrl", "alt", "shift", "s"}))) == [
        A.Type("ok")]


# --- under Xvfb -----------------------------------------------------------------------


def xdo(*args, pause=0.3, until=None):
    """One xdotool command at a person's pace; `until(state)` waits for the sandbox to show
    its effect first, so a loaded machine cannot run actions together."""
    subprocess.run(["xdotool", *map(str, args)], check=True, timeout=30)
    if until is not None:
        until()
    time.sleep(pause)  # pacing, not syncing: each action gets its own "before" screenshot


@pytest.mark.display
def test_record_demo_of_the_sandbox(xvfb_display, tmp_path):
    from agent.frames import Frame, model_to_desktop
    from agent.trajectory import load_run
    from tests.sandbox_proc import ROOT, centre, sandbox, wait_state

    env = {**os.environ, "DESKPILOT_CONFIG_DIR": str(tmp_path / "cfg")}
    with sandbox(tmp_path / "state.json") as state:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "record-demo", "--task", "use the sandbox",
             "--record", str(tmp_path / "runs")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in proc.stdout:  # Xlib may print an xauth warning first
                if line.startswith("recording"):
                    break

            def at(widget):
                return [round(v) for v in centre(state, widget)]

            def shows(predicate):
                return lambda: wait_state(tmp_path / "state.json", predicate)

            xdo("mousemove", *at("click_button"), "click", 1,
                until=shows(lambda st: st["clicks"] == 1))
            xdo("mousemove", *at("double_button"), "click", "--repeat", 2, "--delay", 60, 1,
                until=shows(lambda st: st["double_clicks"] == 1))
            xdo("mousemove", *at("right_button"), "click", 3,
                until=shows(lambda st: st["right_clicks"] == 1))
            xdo("mousemove", *at("line_edit"), "click", 1)
            xdo("type", "--delay", 20, "hi there",
                until=shows(lambda st: st["line_edit"] == "hi there"))
            xdo("key", "Return")
            xdo("mousemove", *at("list"), "click", "--repeat", 3, "--delay", 30, 5,
                until=shows(lambda st: st["list_scroll"] > 0))
            xdo("mousemove", *at("hscroll"), "click", "--repeat", 2, "--delay", 30, 7,
                until=shows(lambda st: st["hscroll"] > 0))
            h, s = state["widgets"]["slider_handle"], state["widgets"]["slider"]
            y = h["y"] + h["height"] // 2
            xdo("mousemove", h["x"] + h["width"] // 2, y, "mousedown", 1)
            for x in range(h["x"] + 20, s["x"] + s["width"] * 3 // 4, 60):
                xdo("mousemove", x, y, pause=0.02)
            xdo("mouseup", 1, until=shows(lambda st: st["slider"] > 0))
            xdo("key", "ctrl+shift+h", until=shows(lambda st: st["menu_action_count"] == 1))
            xdo("key", "ctrl+alt+shift+s")
            out, _ = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 0, out

    run = load_run(next((tmp_path / "runs").iterdir()))
    assert run.meta["outcome"] == "finished" and run.meta["backend"] == "demonstration"
    actions = [step["actions"][0] for step in run.steps]
    assert [a["type"] for a in actions] == [
        "click", "left_double", "right_single", "click", "type", "scroll", "scroll", "drag",
        "hotkey", "finished"]
    assert actions[4]["text"] == "hi there" and actions[4]["enter"] is True
    assert (actions[5]["direction"], actions[5]["amount"]) == ("down", 3)
    assert (actions[6]["direction"], actions[6]["amount"]) == ("right", 2)
    assert actions[8]["keys"] == ["ctrl", "shift", "h"]
    assert all(step["thought"] == "" for step in run.steps)
    # The model-space point of each click maps back onto the widget that was clicked.
    for step, widget in zip(run.steps[:4], ["click_button", "double_button", "right_button",
                                            "line_edit"]):
        frame = Frame.from_dict(step["frame"])
        x, y = model_to_desktop(frame, *step["actions"][0]["point"])
        r = state["widgets"][widget]
        assert r["x"] <= x < r["x"] + r["width"] and r["y"] <= y < r["y"] + r["height"]
        assert "<|box_start|>" in step["reply"]  # written in UI-TARS-1.5's own syntax


@pytest.mark.display
def test_pynput_keys_get_ui_tars_names(xvfb_display):
    from pynput.keyboard import Key as PKey
    from pynput.keyboard import KeyCode

    from agent.desktop.listen import chord_names, key_name

    assert key_name(KeyCode.from_char("A")) == ("a", "A")
    assert key_name(KeyCode.from_char("\x01")) == ("a", None)  # ctrl+a on Windows
    assert key_name(PKey.ctrl_r) == ("ctrl", None)
    assert key_name(PKey.space) == ("space", " ")
    assert key_name(PKey.page_down) == ("pagedown", None)
    assert key_name(PKey.cmd) == ("win", None)
    assert chord_names("<ctrl>+<alt>+<shift>+s") == {"ctrl", "alt", "shift", "s"}
