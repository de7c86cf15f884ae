"""The control strip stays reachable while the screen settles after an action: the real
app on Xvfb, the real DesktopEnv, and the Stop button pressed with the real pointer
(xdotool) during a settle wait that would otherwise last 20 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent.dialects import get_dialect
from agent.frames import Frame, Rect, image_to_model
from tests.sandbox_proc import ROOT, centre, read_state, sandbox
from tests.xvfb import display_env, xvfb


@pytest.mark.display
def test_stop_on_the_strip_works_while_the_screen_settles(tmp_path):
    with xvfb(1280, 800) as display, display_env(display):
        model = get_dialect("uitars-1.5").model_size(1280, 800)
        frame = Frame(Rect(0, 0, 1280, 800), (1280, 800)).with_model(model, "absolute")
        state_file = tmp_path / "state.json"
        with sandbox(state_file) as state:
            mx, my = image_to_model(frame, *centre(state, "click_button"))
            click = f"Thought: Press it.\nAction: click(start_box='({round(mx)},{round(my)})')"
            path = tmp_path / "script.txt"
            path.write_text("\n---\n".join([click] * 3), encoding="utf-8")
            env = {**os.environ, "DESKPILOT_CONFIG_DIR": str(tmp_path / "cfg")}
            done = subprocess.run(
                [sys.executable, "-m", "tests.strip_driver", str(path), str(tmp_path / "runs"),
                 str(tmp_path)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            clicks = read_state(state_file)["clicks"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["strip_visible_while_settling"], report
    assert report["outcome"] == "stopped", report
    assert report["seconds_from_stop_to_end"] < 8, report  # not the 20 s settle timeout
    assert report["steps"] == 1 and clicks == 1  # the Stop click did not reach the sandbox
