"""The HiDPI scale of an X11 desktop: how many physical pixels a logical pixel is.

X11 has no per-monitor logical coordinates: capture and XTEST input both use the root
window's physical pixels, and "200 %" is a convention the desktop announces to toolkits.
We read the same announcements they do; the first that says more than 1x wins:

1. `Xft.dpi` in the X resource database (`xrdb -query`, or the root window's
   RESOURCE_MANAGER property where xrdb is not installed): GNOME, KDE, Xfce and most
   i3/sway-X setups write it; 192 means 2x. Snapped to quarter steps (120 -> 1.25).
2. `GDK_SCALE` (GTK's integer scale), 3. `QT_SCALE_FACTOR` (Qt's).

Values at or below 1 mean no HiDPI. With a scale, monitors get logical rectangles
(physical / scale) and the executor multiplies back, so clicks land on the same physical
pixel either way while recorded coordinates are the logical ones people and toolkits use.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from functools import lru_cache

log = logging.getLogger(__name__)

BASE_DPI = 96.0
MAX_SCALE = 8.0
_XFT_DPI = re.compile(r"^Xft\.dpi:\s*([0-9]+(?:\.[0-9]+)?)\s*$", re.MULTILINE)


def snap(scale: float) -> float:
    """To the nearest quarter (desktops offer 100/125/150/175/200 %...)."""
    return round(scale * 4) / 4


def _as_scale(raw: str | None, what: str) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a number", what, raw)
        return None
    if not 0 < value <= MAX_SCALE * BASE_DPI:
        log.warning("ignoring %s=%r: out of range", what, raw)
        return None
    return value


def scale_from(resources: str, env: Mapping[str, str]) -> float | None:
    """The scale announced by X resources text and the environment; None if none is > 1."""
    m = _XFT_DPI.search(resources or "")
    dpi = _as_scale(m.group(1) if m else None, "Xft.dpi")
    candidates = [
        dpi / BASE_DPI if dpi else None,
        _as_scale(env.get("GDK_SCALE"), "GDK_SCALE"),
        _as_scale(env.get("QT_SCALE_FACTOR"), "QT_SCALE_FACTOR"),
    ]
    for value in candidates:
        if value is not None and snap(value) > 1:
            return min(snap(value), MAX_SCALE)
    return None


def _xrdb_query() -> str | None:
    if shutil.which("xrdb") is None:
        return None
    try:
        out = subprocess.run(
            ["xrdb", "-query"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("xrdb -query failed: %s", exc)
        return None
    return out.stdout if out.returncode == 0 else None


def _root_resources() -> str:
    """RESOURCE_MANAGER of the root window (what xrdb -query prints), via python-xlib."""
    try:
        from Xlib import X, display

        d = display.Display()
        try:
            atom = d.intern_atom("RESOURCE_MANAGER")
            prop = d.screen().root.get_full_property(atom, X.AnyPropertyType)
        finally:
            d.close()
    except Exception as exc:  # no Xlib, no server: no resources to read
        log.debug("cannot read RESOURCE_MANAGER: %s", exc)
        return ""
    if prop is None:
        return ""
    value = prop.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@lru_cache(maxsize=8)
def x_resources(display: str) -> str:
    """The X resource database of `display` (cached: it is read once per display)."""
    text = _xrdb_query()
    return text if text is not None else _root_resources()


def x11_scale() -> float | None:
    """The HiDPI scale of the current X display, or None (1x, or nothing announced)."""
    display = os.environ.get("DISPLAY", "")
    if not display:
        return None
    return scale_from(x_resources(display), os.environ)
