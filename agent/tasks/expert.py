"""The scripted expert: solves any practice task from the widget rectangles.

It reads the practice window's state (agent/tasks/state.py) — which a model never sees
— and decides the next action the way a careful person would: one action per step,
closed-loop, so a list that scrolled further than planned or a menu that closed is
simply handled on the next step. `next_move(task, state)` gives that action in
screen coordinates; `ExpertPolicy` is a `Policy` that writes it as a reply in any
dialect (coordinates in the dialect's model space through agent/frames.py) with a
short natural thought, so running it through the real loop and recorder produces
demonstrations in our trajectory format. `dense_labels(state)` labels every visible
widget of a screenshot (label, kind, box) for training signals richer than one click.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent import actions as A
from agent import frames as F
from agent.protocols import Dialect, TextCallback
from agent.tasks.checker import value_matches
from agent.tasks.layout import Task
from agent.tasks.state import centre, happened


@dataclass(frozen=True)
class Move:
    """One expert step: a thought and an action whose points are desktop logical pixels."""

    thought: str
    action: A.Action


class ExpertStuck(RuntimeError):
    """The state does not show what the task needs (a bug in the window or the expert)."""


def _say(task: Task, options: tuple[str, ...], salt: int, **names: Any) -> str:
    """A phrasing chosen by the task and step, so demonstrations vary but reproduce."""
    rng = random.Random(task.seed * 7919 + salt)
    return rng.choice(options).format(**names)


def _where(state: dict, r: dict) -> str:
    win = state["window"]
    cx, cy = centre(r)
    fx = (cx - win["x"]) / max(1, win["width"])
    fy = (cy - win["y"]) / max(1, win["height"])
    vertical = "top" if fy < 0.34 else "bottom" if fy > 0.66 else "middle"
    horizontal = "left" if fx < 0.34 else "right" if fx > 0.66 else "centre"
    if vertical == "middle" and horizontal == "centre":
        return "in the middle of the window"
    if vertical == "middle":
        return f"on the {horizontal} side"
    return f"near the {vertical} {horizontal}" if horizontal != "centre" else f"at the {vertical}"


class _Aim:
    """Points on the state's widgets, in desktop logical pixels."""

    def __init__(self, state: dict):
        self.state = state
        self.dpr = float(state.get("device_pixel_ratio") or 1.0)

    def rect(self, widget_id: str, part: str | None = None) -> dict:
        entry = self.state["widgets"].get(widget_id)
        if entry is None:
            raise ExpertStuck(f"the window reports no widget {widget_id!r}")
        return entry[part] if part else entry

    def point(self, r: dict, fx: float = 0.5, fy: float = 0.5) -> A.Point:
        x, y = r["x"] + r["width"] * fx, r["y"] + r["height"] * fy
        return A.Point(x / self.dpr, y / self.dpr)

    def at(self, widget_id: str) -> A.Point:
        return self.point(self.rect(widget_id))


def _finished(task: Task, salt: int) -> Move:
    thought = _say(task, ("The task is done.", "That completes the task.",
                          "Everything the task asked for is done.",
                          "Done: the window shows the requested change."), salt)
    return Move(thought, A.Finished(content=""))


def next_move(task: Task, state: dict, step: int = 0) -> Move:
    """The expert's next action for `task` given the window's current `state`."""
    aim = _Aim(state)
    skill, goal = task.skill, task.goal
    label = {wid: entry["label"] for wid, entry in state["widgets"].items()}

    def click(widget_id: str, thought: str) -> Move:
        return Move(thought, A.Click(point=aim.at(widget_id)))

    if skill in ("click", "double_click", "right_click", "hover"):
        target = goal.events[0]["widget"]
        if happened(state, target, skill):
            return _finished(task, step)
        where = _where(state, aim.rect(target))
        name = label[target]
        point = aim.at(target)
        if skill == "click":
            return Move(_say(task, ("The {L} button is {W}; I'll click it.",
                                    "I need to click {L}, which is {W}.",
                                    "Clicking the {L} button {W}."), step, L=name, W=where),
                        A.Click(point=point))
        if skill == "double_click":
            return Move(_say(task, ("{L} is {W}; I'll double-click it.",
                                    "A double click on {L}, {W}."), step, L=name, W=where),
                        A.DoubleClick(point=point))
        if skill == "right_click":
            return Move(_say(task, ("I'll right-click the {L} button {W}.",
                                    "{L} is {W}; a right click opens its menu."), step,
                             L=name, W=where),
                        A.RightClick(point=point))
        return Move(_say(task, ("The {L} card is {W}; I'll rest the pointer on it.",
                                "Moving the mouse over {L}, {W}."), step, L=name, W=where),
                    A.Hover(point=point))

    # Value goals first (in the goal's order), then the events that confirm them.
    values = state["values"]
    for widget_id, expected in goal.values.items():
        if value_matches(expected, values.get(widget_id)):
            continue
        return _fix_value(task, state, aim, widget_id, expected, step)
    if skill == "menu":
        item = goal.events[0]["widget"]
        if happened(state, item, "trigger"):
            return _finished(task, step)
        menu = task.layout.widget(item).parent
        if state.get("open_menu") == menu and state["widgets"][item]["shown"]:
            return click(item, _say(task, ("The {M} menu is open; I'll choose {I}.",
                                           "Now I pick {I} from the menu."), step,
                                    M=label[menu], I=label[item]))
        return click(menu, _say(task, ("I'll open the {M} menu in the menu bar first.",
                                       "{I} lives in the {M} menu, so I open it."), step,
                                M=label[menu], I=label[item]))
    for want in goal.events:
        if not happened(state, want["widget"], want["event"], want.get("values")):
            name = label[want["widget"]]
            return click(want["widget"], _say(task, ("Now I press {L}.",
                                                     "Everything is filled in; I'll click {L}.",
                                                     "Last, the {L} button."), step, L=name))
    return _finished(task, step)


def _fix_value(task: Task, state: dict, aim: _Aim, widget_id: str, expected: Any,
               step: int) -> Move:
    """The next action towards `widget_id` holding `expected`."""
    layout = task.layout
    if widget_id == "tabs":
        tab = next(w for w in layout.widgets if w.kind == "tab" and w.label == expected)
        return Move(_say(task, ("The option is on the {T} tab; I'll open that tab.",
                                "I switch to the {T} tab first."), step, T=expected),
                    A.Click(point=aim.at(tab.id)))
    widget = layout.widget(widget_id)
    entry = aim.rect(widget_id) if widget.kind != "label" else None
    if widget.kind == "label":  # a radio group's value is keyed by its caption's id
        option = next(w for w in layout.widgets if w.group == widget_id and w.label == expected)
        return Move(_say(task, ("Under {G} I select {O}.", "I'll pick the {O} option."), step,
                         G=widget.label, O=expected),
                    A.Click(point=aim.at(option.id)))
    if widget.kind == "checkbox":
        verb = "tick" if expected else "untick"
        return Move(_say(task, ("I'll {V} the '{L}' checkbox {W}.", "The '{L}' box needs a {V}."),
                         step, V=verb, L=widget.label, W=_where(state, entry)),
                    A.Click(point=aim.at(widget_id)))
    if widget.kind == "field":
        current = state["values"].get(widget_id) or ""
        if state.get("focus") != widget_id:
            return Move(_say(task, ("First I click into the {F} field.",
                                    "I'll put the cursor in the {F} field."), step,
                             F=widget.label),
                        A.Click(point=aim.at(widget_id)))
        if current and state.get("selection") != current:
            return Move(_say(task, ("The field already holds '{C}'; I select it all to replace it.",
                                    "Selecting the old text '{C}' first."), step, C=current),
                        A.Hotkey(keys=("ctrl", "a")))
        return Move(_say(task, ("Now I type '{T}'.", "Typing '{T}' into {F}."), step,
                         T=expected, F=widget.label),
                    A.Type(text=expected))
    if widget.kind == "list":
        rows = entry.get("rows") or []
        for row in rows:
            if row["label"] == expected:
                return Move(_say(task, ("{I} is visible now; I'll click it.",
                                        "There is {I}; selecting it."), step, I=expected),
                            A.Click(point=aim.point(row)))
        if not rows:
            raise ExpertStuck(f"list {widget_id} reports no visible rows")
        target = widget.items.index(expected)
        # The default scroll (5 notches): UI-TARS' scroll has no amount, and the
        # practice lists show at least the rows one such scroll moves.
        direction = "down" if target > rows[-1]["row"] else "up"
        return Move(_say(task, ("{I} is not in view; I scroll the list {D}.",
                                "The list shows {A} to {B}; scrolling {D} towards {I}."), step,
                         I=expected, D=direction, A=rows[0]["label"], B=rows[-1]["label"]),
                    A.Scroll(direction, point=aim.at(widget_id)))
    if widget.kind == "slider":
        handle = entry["handle"]
        low, high = expected
        want = (low + high) / 2
        value = state["values"][widget_id]
        span = (entry["width"] - handle["width"]) / aim.dpr
        start = aim.point(handle)
        end = A.Point(start.x + (want - value) / 100 * span, start.y)
        return Move(_say(task, ("The {S} slider is at {V}; I drag its handle to about {T}.",
                                "Dragging the {S} handle from {V} to about {T}."), step,
                         S=widget.label, V=value, T=round(want)),
                    A.Drag(start=start, end=end))
    raise ExpertStuck(f"the expert cannot set a {widget.kind} ({widget_id})")


# --- as a policy ------------------------------------------------------------------------


def with_screen(action: A.Action) -> A.Action:
    """An expert action (points in desktop pixels) ready to execute: screen = point."""
    if isinstance(action, A.PointerAction):
        return dataclasses.replace(action, screen=action.point)
    if isinstance(action, A.Drag):
        return dataclasses.replace(action, screen_start=action.start, screen_end=action.end)
    if isinstance(action, A.Scroll) and action.point is not None:
        return dataclasses.replace(action, screen=action.point)
    return action


def to_model(frame: F.Frame, action: A.Action) -> A.Action:
    """Desktop-pixel points -> the dialect's model space (whole units, as models write)."""
    def convert(p: A.Point) -> A.Point:
        x, y = F.desktop_to_model(frame, p.x, p.y)
        return A.Point(round(x), round(y))

    if isinstance(action, A.PointerAction):
        return dataclasses.replace(action, point=convert(action.point))
    if isinstance(action, A.Drag):
        return dataclasses.replace(action, start=convert(action.start), end=convert(action.end))
    if isinstance(action, A.Scroll) and action.point is not None:
        return dataclasses.replace(action, point=convert(action.point))
    return action


@dataclass
class ExpertReply:
    text: str
    timings: dict[str, float]


def _last_image_size(messages: list[dict]) -> tuple[int, int]:
    for message in reversed(messages):
        content = message.get("content")
        for part in reversed(content if isinstance(content, list) else []):
            image = part.get("image") if isinstance(part, dict) else None
            if part.get("type") == "image" and hasattr(image, "size"):
                return tuple(image.size)
    raise ValueError("the expert needs the screenshot in the messages")


class ExpertPolicy:
    """A `Policy` that replies with the expert's next move, in `dialect`'s own format.

    read_state() returns the window's current state; frame() the Frame of the latest
    observation (monitor and screenshot size) — the model size is the last image's."""

    def __init__(self, task: Task, dialect: Dialect, read_state: Callable[[], dict | None],
                 frame: Callable[[], F.Frame]):
        self.task = task
        self.dialect = dialect
        self.read_state = read_state
        self.frame = frame
        self.steps = 0

    def chat(self, messages: list[dict], *, on_text: TextCallback | None = None,
             **options: Any) -> ExpertReply:
        t0 = time.perf_counter()
        state = self.read_state()
        if not state:
            raise ExpertStuck("the practice window reported no state")
        move = next_move(self.task, state, self.steps)
        frame = self.frame().with_model(_last_image_size(messages), self.dialect.space)
        text = self.dialect.format_reply(move.thought, [to_model(frame, move.action)])
        self.steps += 1
        if on_text is not None:
            on_text(text)
        return ExpertReply(text, {"decode": time.perf_counter() - t0})


def dense_labels(state: dict, origin: tuple[int, int] = (0, 0)) -> list[dict]:
    """Every widget shown in the window: label, kind and box [x1, y1, x2, y2] in the
    screenshot's pixels (`origin` = the captured monitor's top-left in screen pixels)."""
    out = []
    for widget_id, entry in state["widgets"].items():
        if not entry.get("shown", True) or entry["kind"] == "status":
            continue
        x, y = entry["x"] - origin[0], entry["y"] - origin[1]
        out.append({"id": widget_id, "label": entry["label"], "kind": entry["kind"],
                    "box": [x, y, x + entry["width"], y + entry["height"]]})
        for row in entry.get("rows") or []:
            rx, ry = row["x"] - origin[0], row["y"] - origin[1]
            out.append({"id": f"{widget_id}:{row['row']}", "label": row["label"],
                        "kind": "list_item",
                        "box": [rx, ry, rx + row["width"], ry + row["height"]]})
    return out
