"""Monitors on the virtual desktop: where each sits in logical pixels, and its scale.

mss reports every monitor's rectangle in the coordinates its platform captures in:
physical pixels on X11 and on Windows (mss makes the process per-monitor DPI aware, and
pyautogui in the same process then takes physical pixels too), logical points on macOS
(where a grab returns physical pixels, so the scale shows up in the image size).

On X11 capture and input share the root window's physical pixel grid; the desktop's
HiDPI scale is what it announces to toolkits (Xft.dpi, GDK_SCALE, QT_SCALE_FACTOR: see
agent/desktop/hidpi.py), and `desktop_scale()` reports it instead of assuming 1.

`DESKPILOT_SCALE` (environment variable, a number > 0) overrides that: every monitor has
that many physical pixels per logical pixel. The capture stays physical and the
executor multiplies logical coordinates back by the scale before moving the pointer,
which reproduces the Retina/HiDPI code path on an X server (used by the tests, and a
way to check a HiDPI setup by hand).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from agent.desktop.errors import DisplayError
from agent.frames import Rect

SCALE_ENV = "DESKPILOT_SCALE"


@dataclass(frozen=True)
class Monitor:
    """One monitor. `index` is mss' index (1-based; 0 is the whole virtual desktop).

    rect:      logical pixels on the virtual desktop (what pyautogui-level code uses).
    physical:  the rectangle handed to mss to capture this monitor.
    scale:     physical pixels per logical pixel (the captured image is rect * scale).
    """

    index: int
    rect: Rect
    physical: Rect
    scale: float = 1.0
    primary: bool = False
    name: str = ""

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "rect": self.rect.to_dict(),
            "physical": self.physical.to_dict(),
            "scale": self.scale,
            "primary": self.primary,
            "name": self.name,
        }


def scale_override() -> float | None:
    """The DESKPILOT_SCALE override, or None when unset. Bad values raise ValueError."""
    raw = os.environ.get(SCALE_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a number such as 2 or 1.5, got {raw!r}") from None
    if not 0.25 <= value <= 8:
        raise ValueError(f"{SCALE_ENV} must be between 0.25 and 8, got {value}")
    return value


def desktop_scale() -> float | None:
    """Physical pixels per logical pixel for every monitor, None for "as mss reports".

    DESKPILOT_SCALE when set; on X11 the scale the desktop announces; None on macOS
    (measured per monitor instead) and Windows (mss makes the process DPI aware)."""
    override = scale_override()
    if override is not None or sys.platform in ("darwin", "win32"):
        return override
    from agent.desktop.hidpi import x11_scale

    return x11_scale()


def require_display() -> None:
    """Raise DisplayError when this is an X11-style system with no DISPLAY to talk to.

    pyautogui and pynput fail at import with a KeyError or a bare ImportError in that
    case; this says what to do instead.
    """
    if sys.platform in ("darwin", "win32"):
        return
    if os.environ.get("DISPLAY"):
        return
    hint = (
        "a Wayland session was detected: deskpilot needs XWayland, so set DISPLAY (often :0) "
        "or log in to an X11 session"
        if os.environ.get("WAYLAND_DISPLAY")
        else "run inside a desktop session, set DISPLAY=:0 for the local screen, or start a "
        "virtual one (e.g. `Xvfb :99 & export DISPLAY=:99`, or `xvfb-run deskpilot ...`)"
    )
    raise DisplayError(f"no display: the DISPLAY environment variable is not set; {hint}")


def monitors_from_mss(raw: list[dict], *, scale: float | None = None,
                      platform: str = sys.platform) -> list[Monitor]:
    """Turn mss' monitor dicts (index 0 = all of them) into Monitors.

    Pure, so multi-monitor layouts with negative origins can be tested without them.
    """
    if len(raw) < 2:
        raise DisplayError("the display reports no monitors (is the X server/compositor up?)")
    primary_found = any(m.get("is_primary") for m in raw[1:])
    out = []
    for index, m in enumerate(raw[1:], start=1):
        physical = Rect(int(m["left"]), int(m["top"]), int(m["width"]), int(m["height"]))
        if platform == "darwin" and scale is None:
            # mss already reports macOS monitors in logical points.
            rect, s = physical, 1.0
        else:
            s = scale or 1.0
            rect = Rect(round(physical.left / s), round(physical.top / s),
                        max(1, round(physical.width / s)), max(1, round(physical.height / s)))
        primary = bool(m.get("is_primary")) if primary_found else index == 1
        name = str(m.get("name") or m.get("output") or f"monitor {index}")
        out.append(Monitor(index, rect, physical, s, primary, name))
    return out


def open_mss():
    """A new mss screenshotter for the current display, with a DisplayError if impossible."""
    require_display()
    import mss

    try:
        return mss.MSS()
    except Exception as exc:  # mss raises ScreenShotError with the X error inside
        raise DisplayError(
            f"cannot open the display {os.environ.get('DISPLAY', '')!r} for screenshots: {exc}. "
            "Check that the X server is running and that this user may connect to it."
        ) from exc


def list_monitors() -> list[Monitor]:
    """Every monitor on the virtual desktop, mss order (index 1 first)."""
    with open_mss() as sct:
        monitors = monitors_from_mss(list(sct.monitors), scale=desktop_scale())
        if sys.platform == "darwin" and scale_override() is None:
            monitors = [_with_measured_scale(sct, m) for m in monitors]
        return monitors


def _with_measured_scale(sct, monitor: Monitor) -> Monitor:
    """macOS: grab a 16x16-point patch; its pixel width over 16 is the Retina scale."""
    import dataclasses

    r = monitor.physical
    shot = sct.grab({"left": r.left, "top": r.top, "width": 16, "height": 16})
    return dataclasses.replace(monitor, scale=shot.width / 16)


def monitor_at(monitors: list[Monitor], x: float, y: float) -> Monitor | None:
    """The monitor containing the logical desktop point (x, y), if any."""
    return next((m for m in monitors if m.rect.contains(x, y)), None)


def primary(monitors: list[Monitor]) -> Monitor:
    return next((m for m in monitors if m.primary), monitors[0])
