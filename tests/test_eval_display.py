"""Practice tasks on a real X screen (Xvfb): `deskpilot eval tasks --policy expert` solves
them through the desktop executor, and the offscreen render of a task is pixel-identical
to its window on the screen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sandbox_proc import ROOT, wait_state
from tests.xvfb import display_env, xvfb

pytestmark = pytest.mark.display


def deskpilot(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)], ids=["1280x800", "1920x1080"])
def test_expert_scores_one_on_the_real_screen(tmp_path, size):
    with xvfb(*size) as display, display_env(display):
        env = {**os.environ, "DESKPILOT_CONFIG_DIR": str(tmp_path / "cfg")}
        done = deskpilot("eval", "tasks", "--policy", "expert", "--seeds", "0-4",
                         "--runs", str(tmp_path / "runs"), "--json", str(tmp_path / "e.json"),
                         env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["success_rate"] == 1.0, done.stderr
    assert len(summary["tasks"]) == 5
    from agent.trajectory import load_run

    run = load_run(summary["tasks"][0]["run"])
    assert run.meta["extra"]["env"] == "desktop"
    assert run.meta["monitors"][0]["rect"]["width"] == size[0]


def _grab(display: str, box: dict):
    import mss
    from PIL import Image

    with mss.mss(display=display) as sct:
        shot = sct.grab({"left": box["x"], "top": box["y"], "width": box["width"],
                         "height": box["height"]})
    return Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")


def _stable_grab(display: str, box: dict, timeout: float = 15.0):
    """The window's pixels once two grabs in a row agree (it has finished painting)."""
    deadline = time.monotonic() + timeout
    last = _grab(display, box)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        current = _grab(display, box)
        if current.tobytes() == last.tobytes():
            return current
        last = current
    raise AssertionError("the window never stopped changing")


def test_offscreen_render_is_pixel_identical_to_the_window_on_screen(tmp_path):
    from PIL import Image, ImageChops

    from agent.tasks import generate

    seeds = [next(s for s in range(100) if generate(s).skill == skill)
             for skill in ("form", "menu", "tab_tick", "dialog_tick_ok", "scroll_select")]
    with xvfb(1280, 800) as display, display_env(display):
        from agent.desktop.pyautogui_loader import load_pyautogui

        load_pyautogui().moveTo(5, 5)  # off every window: no hover highlight anywhere
        for seed in seeds:
            state_file = tmp_path / f"state_{seed}.json"
            proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "sandbox", "--task-seed", str(seed),
                 "--state-file", str(state_file)],
                cwd=ROOT, env={**os.environ, "QT_QPA_PLATFORM": "xcb"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                state = wait_state(state_file, lambda s: s["visible"], timeout=30)
                on_screen = _stable_grab(display, state["window"])
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            image = tmp_path / f"offscreen_{seed}.png"
            off = subprocess.run(
                [sys.executable, "-m", "app.cli", "tasks", "label", str(seed), "--image",
                 str(image), "--screen", "1280x800"],
                cwd=ROOT, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                capture_output=True, text=True, timeout=120)
            assert off.returncode == 0, off.stderr
            w = state["window"]
            rendered = Image.open(image).convert("RGB").crop(
                (w["x"], w["y"], w["x"] + w["width"], w["y"] + w["height"]))
            assert rendered.size == on_screen.size
            diff = ImageChops.difference(rendered, on_screen).getbbox()
            assert diff is None, f"seed {seed}: pixels differ in {diff}"
    assert Path(image).is_file()
