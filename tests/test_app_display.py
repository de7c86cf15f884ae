"""The real app under Xvfb: a scripted task drives the practice sandbox, the app keeps
out of its own screenshots, a screenshot of the window is saved, and the global stop
hotkey stops a run started from the app.

The app runs in a subprocess (tests/app_display_driver.py) on a private Xvfb with the
real DesktopEnv; the sandbox is a second process that reports its state as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from agent.dialects import get_dialect
from agent.frames import Frame, Rect, image_to_model
from tests.sandbox_proc import ROOT, centre, sandbox, wait_state
from tests.xvfb import display_env, xvfb

ASSETS = ROOT / "assets"


def at(state: dict, frame: Frame, widget: str, fx: float = 0.5) -> str:
    r = state["widgets"][widget]
    x, y = (r["x"] + r["width"] * fx, r["y"] + r["height"] / 2) if fx != 0.5 else centre(
        state, widget)
    mx, my = image_to_model(frame, x, y)
    return f"'({round(mx)},{round(my)})'"


def script(state: dict, frame: Frame) -> str:
    handle = state["widgets"]["slider_handle"]
    slider = state["widgets"]["slider"]
    to_x = slider["x"] + slider["width"] * 0.75
    mx, my = image_to_model(frame, to_x, handle["y"] + handle["height"] / 2)
    return "\n---\n".join([
        "Thought: The sandbox is open. I start by pressing the \"Click me\" button.\n"
        f"Action: click(start_box={at(state, frame, 'click_button')})",
        "Thought: Now I type the greeting into the one-line text field.\n"
        f"Action: click(start_box={at(state, frame, 'line_edit')})\n\n"
        "type(content='héllo 世界 🙂')",
        "Thought: Tick \"Remember me\".\n"
        f"Action: click(start_box={at(state, frame, 'checkbox')})",
        "Thought: Drag the slider to about three quarters.\n"
        f"Action: drag(start_box={at(state, frame, 'slider_handle')}, "
        f"end_box='({round(mx)},{round(my)})')",
        "Thought: Scroll the list down to see more items.\n"
        f"Action: scroll(start_box={at(state, frame, 'list')}, direction='down')",
        "Thought: Everything is done.\nAction: finished(content='sandbox tidied')",
    ])


@pytest.mark.display
def test_app_drives_the_sandbox_and_screenshots_itself(tmp_path):
    with xvfb(1280, 800) as display, display_env(display):
        model = get_dialect("uitars-1.5").model_size(1280, 800)
        frame = Frame(Rect(0, 0, 1280, 800), (1280, 800)).with_model(model, "absolute")
        state_file = tmp_path / "state.json"
        with sandbox(state_file) as state:
            path = tmp_path / "script.txt"
            path.write_text(script(state, frame), encoding="utf-8")
            env = {**os.environ, "DESKPILOT_CONFIG_DIR": str(tmp_path / "cfg")}
            done = subprocess.run(
                [sys.executable, "-m", "tests.app_display_driver", str(path),
                 "Tidy up the practice sandbox", str(tmp_path / "runs"), str(tmp_path)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            final = wait_state(state_file, lambda s: s["checked"] is True)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"] == "finished" and report["steps"] == 6, report
    assert report["window_hidden_while_running"] and report["strip_shown"]
    assert report["hidden_during_capture"] >= 6  # the strip hid for every screenshot
    assert report["window_visible_after"]
    # the global stop hotkey (pressed with xdotool, from outside the app) stops a run
    # during its first wait(): long before the script's ten 5-second waits would end
    assert report["hotkey_started"] and report["hotkey_outcome"] == "stopped", report
    assert report["hotkey_seconds"] < 12 and report["hotkey_steps"] <= 2
    assert final["clicks"] == 1 and final["line_edit"] == "héllo 世界 🙂"
    assert final["list_scroll"] > 0 and 60 <= final["slider"] <= 90

    # the app never appears in what the agent saw: no step's screenshot contains the strip
    from agent.trajectory import load_run

    run = load_run(report["run_dir"])
    assert run.outcome == "finished"
    accent = (0x7C, 0x5C, 0xFF)  # the app's accent colour (strip border, primary buttons)
    for step in run.steps:
        image = run.image(step).convert("RGB")
        leaked = sum(1 for pixel in image.getdata() if pixel == accent)
        assert leaked == 0, f"step {step['index']}: the app is in the agent's screenshot"
    from PIL import Image

    shot = Image.open(tmp_path / "app.png")
    assert shot.size[0] >= 1000 and shot.size[1] >= 600
    # The README's pictures are refreshed only on request, so running the suite never
    # dirties tracked files: DESKPILOT_UPDATE_SCREENSHOTS=1 pytest tests/test_app_display.py
    if os.environ.get("DESKPILOT_UPDATE_SCREENSHOTS") == "1":
        ASSETS.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "app.png", ASSETS / "screenshot-app.png")
        shutil.copyfile(tmp_path / "inspector.png", ASSETS / "screenshot-inspector.png")
