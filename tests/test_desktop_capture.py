"""Monitors and screenshots: layouts, sizes, colours, the scale override, bad displays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.desktop import DisplayError
from agent.desktop.capture import Capturer, is_black, parse_monitor_choice
from agent.desktop.monitors import monitor_at, monitors_from_mss, primary
from agent.desktop.settle import wait_for_settle
from agent.frames import Frame, Rect, desktop_to_model, model_to_desktop

# --- pure: monitor layouts mss would report on a real multi-monitor desk ---------------

TWO_MONITORS = [
    {"left": -1920, "top": -200, "width": 4480, "height": 1640},  # the whole desktop
    {"left": 0, "top": 0, "width": 2560, "height": 1440, "is_primary": True, "name": "DP-1"},
    {"left": -1920, "top": -200, "width": 1920, "height": 1080, "name": "HDMI-1"},
]


def test_monitors_keep_negative_origins_and_primary():
    monitors = monitors_from_mss(TWO_MONITORS, platform="linux")
    assert [m.rect for m in monitors] == [Rect(0, 0, 2560, 1440), Rect(-1920, -200, 1920, 1080)]
    assert primary(monitors).name == "DP-1"
    assert monitor_at(monitors, -10, -5).name == "HDMI-1"
    assert monitor_at(monitors, -10, 900) is None  # below the left monitor: off every screen


def test_scale_override_makes_logical_rects_and_frame_math_round_trips():
    """Xvfb can only put its single screen at the origin, so an off-origin HiDPI monitor
    is tested here with mss' layout data: model point -> desktop -> back is exact."""
    left = monitors_from_mss(TWO_MONITORS, scale=2.0, platform="linux")[1]
    assert left.rect == Rect(-960, -100, 960, 540) and left.physical.width == 1920
    frame = Frame(left.rect, (left.physical.width, left.physical.height)).with_model(
        (1932, 1092), "absolute")
    assert frame.scale == (2.0, 2.0)
    x, y = model_to_desktop(frame, 966, 546)  # the centre of the resized image
    assert (x, y) == pytest.approx((-480, 170))
    assert desktop_to_model(frame, x, y) == pytest.approx((966, 546))


def test_macos_rects_are_already_logical():
    monitors = monitors_from_mss(TWO_MONITORS, platform="darwin")
    assert monitors[0].rect == Rect(0, 0, 2560, 1440)


def test_no_monitor_is_a_display_error():
    with pytest.raises(DisplayError, match="no monitors"):
        monitors_from_mss([{"left": 0, "top": 0, "width": 1, "height": 1}])


@pytest.mark.parametrize("value", ["auto", "AUTO", 2, "3"])
def test_monitor_choice_accepts(value):
    assert parse_monitor_choice(value) in ("auto", 2, 3)


@pytest.mark.parametrize("value", [0, -1, "left", True, 1.5])
def test_monitor_choice_rejects(value):
    with pytest.raises(ValueError, match="monitor"):
        parse_monitor_choice(value)


def test_bad_scale_override_is_explained(monkeypatch):
    from agent.desktop.monitors import scale_override

    monkeypatch.setenv("DESKPILOT_SCALE", "retina")
    with pytest.raises(ValueError, match="DESKPILOT_SCALE must be a number"):
        scale_override()


# --- pure: settling --------------------------------------------------------------------


def _frames(*shades):
    from PIL import Image

    images = [Image.new("RGB", (320, 200), (s, s, s)) for s in shades]
    return lambda: images.pop(0) if len(images) > 1 else images[0]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_settle_returns_once_two_frames_match():
    clock = FakeClock()
    result = wait_for_settle(_frames(0, 90, 180, 180), timeout=3, clock=clock, sleep=clock.sleep)
    assert result.settled and result.frames == 4 and result.elapsed == pytest.approx(0.15)


def test_settle_gives_up_at_the_timeout():
    clock = FakeClock()
    shades = [(i * 40) % 256 for i in range(200)]
    result = wait_for_settle(_frames(*shades), timeout=1.0, clock=clock, sleep=clock.sleep)
    assert not result.settled and result.elapsed == pytest.approx(1.0)


# --- no display -----------------------------------------------------------------------


def test_missing_display_says_what_to_do(monkeypatch):
    from agent.desktop import DesktopEnv, KillSwitch, list_monitors

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for attempt in (DesktopEnv, list_monitors, KillSwitch(on_stop=lambda: None).start):
        with pytest.raises(DisplayError, match="DISPLAY environment variable is not set.*Xvfb"):
            attempt()


def test_importing_the_package_touches_no_screen():
    code = ("import sys, agent.desktop; "
            "print(sorted(m for m in ('mss', 'pyautogui', 'pynput', 'PIL', 'Xlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "[]"


# --- under Xvfb -----------------------------------------------------------------------


@pytest.fixture
def paint_root(xvfb_display):
    """Fill the X root window with one colour (Xvfb's root is black by default).

    The connection stays open for the whole test: when its last client leaves, an X
    server resets and the root turns black again.
    """
    from Xlib import display

    dpy = display.Display()

    def paint(rgb: int) -> None:
        root = dpy.screen().root
        root.change_attributes(background_pixel=rgb)
        root.clear_area(0, 0, 0, 0)
        dpy.sync()

    yield paint
    dpy.close()


@pytest.mark.display
def test_capture_is_the_monitor_in_rgb(paint_root):
    from agent.desktop import DesktopEnv, list_monitors

    (monitor,) = list_monitors()
    assert monitor.rect == Rect(0, 0, 1280, 800) and monitor.scale == 1.0 and monitor.primary
    paint_root(0x336699)
    env = DesktopEnv(monitor=1)
    obs = env.observe()
    assert obs.image.mode == "RGB" and obs.image.size == (1280, 800)
    assert obs.image.getpixel((640, 400)) == (0x33, 0x66, 0x99)  # BGRA decoded correctly
    assert obs.frame == Frame(Rect(0, 0, 1280, 800), (1280, 800))
    env.close()


@pytest.mark.display
def test_auto_monitor_follows_the_pointer(paint_root):
    paint_root(0x808080)
    capturer = Capturer("auto")
    assert capturer.choose().index == 1
    with pytest.raises(DisplayError, match="monitor 2 does not exist.*1 monitor"):
        Capturer(2).capture()


@pytest.mark.display
def test_scale_override_captures_physical_pixels_with_logical_rect(paint_root, monkeypatch):
    monkeypatch.setenv("DESKPILOT_SCALE", "2")
    paint_root(0x202020)
    from agent.desktop import DesktopEnv

    obs = DesktopEnv().observe()
    assert obs.frame.monitor == Rect(0, 0, 640, 400)
    assert obs.image.size == (1280, 800) and obs.frame.scale == (2.0, 2.0)


@pytest.mark.display
def test_all_black_screenshot_on_wayland_is_a_display_error(xvfb_display, monkeypatch):
    from agent.desktop import DesktopEnv

    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    env = DesktopEnv()
    with pytest.raises(DisplayError, match="completely black") as info:
        env.observe()
    assert "This is a Wayland session" in str(info.value)
    assert is_black(env.capturer.grab(env.capturer.choose(), check_black=False))


@pytest.mark.display
def test_all_black_screenshot_on_x11_is_a_real_screen_with_a_warning(
    xvfb_display, monkeypatch, caplog
):
    """An empty i3 workspace is black: the model must see it, and the person is told once."""
    from agent.desktop import DesktopEnv

    monkeypatch.setenv("XDG_SESSION_TYPE", "x11")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    env = DesktopEnv()
    with caplog.at_level("WARNING", logger="agent.desktop.capture"):
        first, second = env.observe(), env.observe()
    assert is_black(first.image) and first.image.size == (1280, 800)
    assert is_black(second.image)
    warnings = [r for r in caplog.records if "completely black" in r.getMessage()]
    assert len(warnings) == 1 and "X11" in warnings[0].getMessage()
    env.close()


@pytest.mark.display
def test_the_apps_own_windows_are_hidden_during_capture(paint_root):
    """A stand-in for the app's window (a real X window) is unmapped around each grab."""
    import contextlib
    import time

    from Xlib import X, display

    from agent.desktop import DesktopEnv

    paint_root(0x0000FF)
    dpy = display.Display()
    screen = dpy.screen()
    window = screen.root.create_window(
        100, 100, 300, 200, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
        background_pixel=0xFF0000, override_redirect=True)
    window.map()
    dpy.sync()
    deadline = time.monotonic() + 30  # wait for the window on screen, however busy the box
    while DesktopEnv().observe().image.getpixel((200, 200)) != (255, 0, 0):
        assert time.monotonic() < deadline, "the stand-in window never appeared"
        time.sleep(0.05)
    calls = []

    @contextlib.contextmanager
    def hide():
        window.unmap()
        dpy.sync()
        calls.append("hidden")
        yield
        window.map()
        dpy.sync()

    assert DesktopEnv().observe().image.getpixel((200, 200)) == (255, 0, 0)
    hidden = DesktopEnv(hide_windows=hide).observe().image
    assert calls == ["hidden"] and hidden.getpixel((200, 200)) == (0, 0, 255)
    dpy.close()


@pytest.mark.parametrize("command", [
    ["sandbox"],
    ["record-demo", "--task", "anything"],
    ["run", "anything", "--policy", "script:{script}", "--env", "desktop"],
])
def test_commands_without_a_display_explain_themselves(command, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("Thought: x\nAction: wait()", encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["DESKPILOT_CONFIG_DIR"] = str(tmp_path / "cfg")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *[c.format(script=script) for c in command]],
        cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "DISPLAY" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.display
def test_a_run_on_a_black_wayland_screen_ends_with_the_reason_and_is_recorded(
    xvfb_display, tmp_path
):
    from agent.trajectory import load_run

    script = tmp_path / "script.txt"
    script.write_text("Thought: x\nAction: wait()", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "anything", "--policy", f"script:{script}",
         "--env", "desktop", "--record", str(tmp_path / "runs")],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DESKPILOT_CONFIG_DIR": str(tmp_path / "cfg"),
             "XDG_SESSION_TYPE": "wayland"})
    assert done.returncode == 1 and "completely black" in done.stdout, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = load_run(run_dir)
    assert run.meta["outcome"] == "error" and "completely black" in run.meta["final_message"]
