"""Did the run do the task? A verdict over the practice window's reported state.

The state (written by app/task_window.py, or by agent/tasks/simulate.py for the pure
model) holds every widget's current value and the list of events that happened
(clicks, double clicks, right clicks, hovers, menu triggers), each with a snapshot of the
values at that moment. The task succeeds when

- every goal value holds at the end (text exactly; a slider within its range),
- every goal event happened (with the values it requires at that moment: Submit
  pressed after the text was typed, not before),
- and nothing else was done: no widget outside the goal was activated (a look-alike
  button clicked, Cancel pressed, a menu item chosen) and no other value changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.tasks.layout import Layout, Task

# Events that do something (hovering does not).
ACTIVATIONS = ("click", "double_click", "right_click", "trigger")


@dataclass(frozen=True)
class Verdict:
    success: bool
    failures: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"success": self.success, "failures": list(self.failures)}


def initial_values(layout: Layout) -> dict[str, Any]:
    """Every value the window starts with: fields, checkboxes, radio groups, lists,
    sliders and the tab bar ("tabs"), keyed as the state reports them."""
    values: dict[str, Any] = {}
    for w in layout.widgets:
        if w.kind == "field":
            values[w.id] = w.value or ""
        elif w.kind == "checkbox":
            values[w.id] = bool(w.value)
        elif w.kind == "slider":
            values[w.id] = int(w.value or 0)
        elif w.kind == "list":
            values[w.id] = None
        elif w.kind == "radio":
            values.setdefault(w.group, None)
            if w.value:
                values[w.group] = w.label
        elif w.kind == "tab":
            values.setdefault("tabs", None)
            if w.value:
                values["tabs"] = w.label
    return values


def value_matches(expected: Any, actual: Any) -> bool:
    """A [low, high] pair of numbers is a range (sliders); anything else must be equal."""
    if (isinstance(expected, list | tuple) and len(expected) == 2
            and all(isinstance(v, int | float) for v in expected)):
        return isinstance(actual, int | float) and expected[0] <= actual <= expected[1]
    return expected == actual


def _name(layout: Layout, widget_id: str) -> str:
    try:
        w = layout.widget(widget_id)
    except KeyError:
        return widget_id
    return f"{w.kind} '{w.label}'" if w.label else w.kind


def check(task: Task, state: dict | None) -> Verdict:
    """The verdict for `task` given the window's final `state`."""
    if not state or not isinstance(state.get("values"), dict):
        return Verdict(False, ("the practice window reported no state",))
    if state.get("task_seed") not in (None, task.seed):
        return Verdict(False, (f"the state is of task {state.get('task_seed')}, "
                               f"not task {task.seed}",))
    layout, goal = task.layout, task.goal
    values, events = state["values"], state.get("events") or []
    failures: list[str] = []
    for widget_id, expected in goal.values.items():
        actual = values.get(widget_id)
        if not value_matches(expected, actual):
            failures.append(f"{_name(layout, widget_id)} holds {actual!r}, expected {expected!r}")
    for want in goal.events:
        matching = [e for e in events
                    if e.get("widget") == want["widget"] and e.get("event") == want["event"]]
        if not matching:
            failures.append(f"{_name(layout, want['widget'])} never got a {want['event']}")
            continue
        required = want.get("values") or {}
        if required and not any(
            all(value_matches(v, (e.get("values") or {}).get(k)) for k, v in required.items())
            for e in matching
        ):
            failures.append(f"{_name(layout, want['widget'])} got a {want['event']}, but not "
                            f"after the other steps were done ({required})")
    for e in events:
        if e.get("event") in ACTIVATIONS and e.get("widget") not in goal.allowed:
            failures.append(f"extra action: {e['event']} on {_name(layout, e.get('widget', '?'))}")
    start = initial_values(layout)
    for widget_id, initial in start.items():
        if widget_id not in goal.values and values.get(widget_id, initial) != initial:
            what = "the tab bar" if widget_id == "tabs" else _name(layout, widget_id)
            failures.append(f"extra action: {what} changed from {initial!r} "
                            f"to {values.get(widget_id)!r}")
    return Verdict(not failures, tuple(dict.fromkeys(failures)))
