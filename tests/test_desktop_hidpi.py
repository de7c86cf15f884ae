"""HiDPI on X11: the scale the desktop announces (Xft.dpi, GDK_SCALE, QT_SCALE_FACTOR),
DESKPILOT_SCALE above it, and `--monitor auto` choosing its monitor once per run."""

from __future__ import annotations

import pytest

from agent.desktop import hidpi
from agent.desktop.hidpi import scale_from
from agent.frames import Rect


@pytest.mark.parametrize(
    ("resources", "env", "scale"),
    [
        ("", {}, None),
        ("Xft.dpi:\t96\n", {}, None),
        ("Xft.antialias:\t1\nXft.dpi:\t192\nXft.hinting:\t1\n", {}, 2.0),
        ("Xft.dpi:\t144\n", {}, 1.5),
        ("Xft.dpi:\t120\n", {}, 1.25),
        ("Xft.dpi:\t100\n", {}, None),  # a font tweak, not a scale: snapped to 1x
        ("Xft.dpi:\t288\n", {"GDK_SCALE": "2"}, 3.0),  # the X resource wins
        ("", {"GDK_SCALE": "2"}, 2.0),
        ("", {"QT_SCALE_FACTOR": "1.5"}, 1.5),
        ("", {"GDK_SCALE": "2", "QT_SCALE_FACTOR": "1.5"}, 2.0),
        ("Xft.dpi:\t96\n", {"GDK_SCALE": "2"}, 2.0),  # first that says more than 1x
        ("", {"GDK_SCALE": "two"}, None),  # not ours to refuse: ignored with a warning
        ("", {"QT_SCALE_FACTOR": "-1"}, None),
        ("Xft.dpi:\tlarge\n", {}, None),
    ],
)
def test_scale_from_resources_and_environment(resources, env, scale):
    assert scale_from(resources, env) == scale


def test_deskpilot_scale_overrides_the_desktop(monkeypatch):
    from agent.desktop import monitors

    monkeypatch.setattr(hidpi, "x11_scale", lambda: 2.0)
    monkeypatch.setattr(monitors.sys, "platform", "linux")
    assert monitors.desktop_scale() == 2.0
    monkeypatch.setenv("DESKPILOT_SCALE", "1.5")
    assert monitors.desktop_scale() == 1.5


@pytest.fixture
def xft_dpi(xvfb_display):
    """Sets Xft.dpi in the Xvfb's resource database (RESOURCE_MANAGER on the root window,
    which is what `xrdb -merge` writes); removes it and the cached copy afterwards."""
    from Xlib import X, Xatom, display

    dpy = display.Display()
    atom = dpy.intern_atom("RESOURCE_MANAGER")

    def set_dpi(dpi: int) -> None:
        text = f"Xft.antialias:\t1\nXft.dpi:\t{dpi}\n".encode()
        dpy.screen().root.change_property(atom, Xatom.STRING, 8, text, X.PropModeReplace)
        dpy.sync()
        hidpi.x_resources.cache_clear()

    yield set_dpi
    dpy.screen().root.delete_property(atom)
    dpy.sync()
    dpy.close()
    hidpi.x_resources.cache_clear()


@pytest.mark.display
def test_xft_dpi_on_the_x_server_makes_monitors_hidpi(xft_dpi, monkeypatch):
    from agent.desktop import list_monitors

    monkeypatch.delenv("DESKPILOT_SCALE", raising=False)
    monkeypatch.setattr(hidpi, "_xrdb_query", lambda: None)  # read the root property
    (plain,) = list_monitors()
    assert plain.scale == 1.0 and plain.rect == Rect(0, 0, 1280, 800)
    xft_dpi(192)
    (scaled,) = list_monitors()
    assert scaled.scale == 2.0
    assert scaled.rect == Rect(0, 0, 640, 400) and scaled.physical == Rect(0, 0, 1280, 800)


@pytest.mark.display
def test_a_hidpi_click_lands_on_the_physical_pixel(xft_dpi, monkeypatch):
    """Logical (320, 200) at 2x is physical (640, 400): where XTEST puts the pointer."""
    from agent import actions as A
    from agent.desktop.executor import Executor
    from agent.desktop.pyautogui_loader import load_pyautogui

    monkeypatch.delenv("DESKPILOT_SCALE", raising=False)
    monkeypatch.setattr(hidpi, "_xrdb_query", lambda: None)
    xft_dpi(192)
    action = A.Hover(point=A.Point(0, 0), screen=A.Point(320, 200))
    result = Executor().execute(action, Rect(0, 0, 640, 400))
    assert result.ok, result.error
    assert tuple(load_pyautogui().position()) == (640, 400)


@pytest.mark.display
def test_auto_monitor_is_chosen_once_per_run(xvfb_display, monkeypatch):
    """The pointer moving (the agent's own clicks) does not make later steps re-choose."""
    from agent import actions as A
    from agent.desktop import DesktopEnv

    env = DesktopEnv(monitor="auto", settle_timeout=0)
    chosen = []
    real_choose = env.capturer.choose

    def counting_choose(*args):
        chosen.append(real_choose(*args))
        return chosen[-1]

    monkeypatch.setattr(env.capturer, "choose", counting_choose)
    frames = []
    for x in (10, 600, 1200):
        frames.append(env.observe().frame)
        assert env.execute(A.Hover(point=A.Point(0, 0), screen=A.Point(x, 300))).ok
    assert len(chosen) == 1 and len(set(frames)) == 1
    env.close()
