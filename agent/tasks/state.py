"""The practice window's reported state: one schema for the Qt window and the pure model.

    {"version": 2, "task_seed": int, "title": str (the instruction), "visible": bool,
     "device_pixel_ratio": float,
     "window": RECT,
     "widgets": {id: {"kind", "label", "shown", **RECT,
                      "rows": [{"row", "label", **RECT}]   # lists: fully visible rows
                      "handle": RECT}},                     # sliders
     "values": {id: value},          # see checker.initial_values for the keys
     "focus": id | None, "selection": str,   # the focused field and its selected text
     "open_menu": id | None, "dialog_open": bool,
     "events": [{"widget", "event", "values"}]}

RECT is {"x", "y", "width", "height"} in screen pixels (logical times the device pixel
ratio), so a test or the expert can aim at a widget with no knowledge of the layout.
"""

from __future__ import annotations

STATE_VERSION = 2


def rect(x: float, y: float, width: float, height: float) -> dict[str, int]:
    return {"x": round(x), "y": round(y), "width": round(width), "height": round(height)}


def centre(r: dict) -> tuple[float, float]:
    return r["x"] + r["width"] / 2, r["y"] + r["height"] / 2


def happened(state: dict, widget_id: str, event: str, values: dict | None = None) -> bool:
    """Whether `event` happened on the widget (with those values at that moment)."""
    from agent.tasks.checker import value_matches

    for e in state.get("events") or []:
        if e.get("widget") == widget_id and e.get("event") == event:
            snapshot = e.get("values") or {}
            if all(value_matches(v, snapshot.get(k)) for k, v in (values or {}).items()):
                return True
    return False
