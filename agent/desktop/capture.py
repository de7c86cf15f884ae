"""Screenshots of one monitor with mss, as PIL RGB images in physical pixels.

The monitor is chosen per capture: "auto" follows the pointer (the monitor the person
is working on) and falls back to the primary one; an int picks mss' monitor index.
The app's own windows are hidden while the screen is grabbed through the optional
`hide_windows` callback, which returns a context manager (the GUI hides its windows on
enter and shows them on exit), so the model never sees the agent's own UI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from agent.desktop.errors import DisplayError
from agent.desktop.monitors import (
    Monitor,
    desktop_scale,
    monitor_at,
    monitors_from_mss,
    open_mss,
    primary,
)

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

MonitorChoice = str | int
HideWindows = Callable[[], AbstractContextManager]


def parse_monitor_choice(value: MonitorChoice) -> MonitorChoice:
    """"auto" or a 1-based monitor index (also given as a string, e.g. from settings)."""
    if isinstance(value, bool):
        raise ValueError(f"monitor must be 'auto' or an index, got {value!r}")
    if isinstance(value, int):
        choice = value
    elif isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    elif isinstance(value, str) and value.strip().isdigit():
        choice = int(value.strip())
    else:
        raise ValueError(f"monitor must be 'auto' or an index such as 1, got {value!r}")
    if choice < 1:
        raise ValueError(f"monitor indices start at 1 (0 would be every monitor), got {choice}")
    return choice


def is_black(image: Image) -> bool:
    """True when every pixel is pure black (what Wayland returns without the portal)."""
    return all(high == 0 for _low, high in image.getextrema())


def is_wayland_session() -> bool:
    """A Wayland session, where our X11 capture (no screen-capture portal) sees black."""
    session = os.environ.get("XDG_SESSION_TYPE", "").strip().lower()
    return session == "wayland" or bool(os.environ.get("WAYLAND_DISPLAY"))


def black_screen_error(monitor: Monitor) -> DisplayError:
    """The refusal for a black capture where the backend is known not to work (Wayland)."""
    return DisplayError(
        f"the screenshot of monitor {monitor.index} ({monitor.name}) is completely black, so "
        "the model would see nothing. This is a Wayland session: screenshots through X11 "
        "come back black unless the desktop's screen-capture portal is used. Log in to an "
        "X11 ('Xorg') session, or run the agent in a virtual X display (Xvfb)."
    )


def black_screen_warning(monitor: Monitor) -> str:
    return (
        f"the screenshot of monitor {monitor.index} ({monitor.name}) is completely black; "
        "carrying on, since on X11 that is a real screen (an empty workspace, a black "
        "wallpaper). If it should not be black, the screen may be locked or asleep."
    )


class Capturer:
    """Grabs the chosen monitor. One mss handle per thread (X connections aren't shared)."""

    def __init__(self, monitor: MonitorChoice = "auto", hide_windows: HideWindows | None = None):
        self.monitor = parse_monitor_choice(monitor)
        self.hide_windows = hide_windows
        self._local = threading.local()
        self._warned_black: set[int] = set()  # monitors already warned about, once each

    def _sct(self):
        sct = getattr(self._local, "sct", None)
        if sct is None:
            sct = self._local.sct = open_mss()
        return sct

    def close(self) -> None:
        sct = getattr(self._local, "sct", None)
        if sct is not None:
            sct.close()
            self._local.sct = None

    def monitors(self) -> list[Monitor]:
        return monitors_from_mss(list(self._sct().monitors), scale=desktop_scale())

    def choose(self, monitors: list[Monitor] | None = None) -> Monitor:
        monitors = monitors if monitors is not None else self.monitors()
        if self.monitor == "auto":
            return monitor_at(monitors, *pointer_position(monitors)) or primary(monitors)
        if self.monitor > len(monitors):
            raise DisplayError(
                f"monitor {self.monitor} does not exist: this display has {len(monitors)} "
                f"monitor(s); choose 1..{len(monitors)} or 'auto'"
            )
        return monitors[self.monitor - 1]

    def hiding(self) -> AbstractContextManager:
        """The app's windows hidden for the block (a no-op without a hide_windows callback)."""
        return self.hide_windows() if self.hide_windows else contextlib.nullcontext()

    def grab(self, monitor: Monitor, *, check_black: bool = True, hide: bool = True) -> Image:
        """The monitor's pixels as an RGB image of its physical size.

        hide=False when the caller already hides the app's windows around many grabs.
        """
        from PIL import Image

        r = monitor.physical
        region = {"left": r.left, "top": r.top, "width": r.width, "height": r.height}
        with self.hiding() if hide else contextlib.nullcontext():
            shot = self._sct().grab(region)
        image = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")
        if check_black and is_black(image):
            # Only Wayland is known to hand X11 clients a black screen; on X11 black is
            # what is there (an empty i3 workspace), so the model gets to see it.
            if is_wayland_session():
                raise black_screen_error(monitor)
            if monitor.index not in self._warned_black:
                self._warned_black.add(monitor.index)
                log.warning("%s", black_screen_warning(monitor))
        return image

    def capture(self) -> tuple[Image, Monitor]:
        monitor = self.choose()
        return self.grab(monitor), monitor


def pointer_position(monitors: list[Monitor]) -> tuple[float, float]:
    """The pointer in logical desktop pixels (pyautogui reports input-space pixels)."""
    from agent.desktop.pyautogui_loader import load_pyautogui

    x, y = load_pyautogui().position()
    s = desktop_scale() or 1.0
    return x / s, y / s
