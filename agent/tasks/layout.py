"""What a practice task is: a window layout of widgets, an instruction and a goal.

Everything here is plain data (JSON-ready through `to_dict`/`from_dict`), so the pure
generator, checker, simulator and expert share it with the Qt renderer in app/, and a
task travels inside a recorded run's meta.json.

Rectangles are window-local logical pixels (origin at the window's top-left, inside any
frame); the window itself sits on the screen at a seeded fraction of the free space, so
the same task fits any screen at least as large as the window.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Widget kinds. "field" is a one-line text box (its caption is a separate "label");
# "radio" widgets of one `group` exclude each other; "menu" is a title in the menu bar
# whose "menu_item"s (parent = the menu's id) show while it is open; "tab" widgets form
# one tab bar, and a widget with `page` set shows only while that tab is current;
# "dialog" is an in-window modal panel whose children (parent = its id) take all input
# while it is open; "hover" is a card that reacts to the pointer resting on it.
KINDS = ("button", "field", "label", "checkbox", "radio", "list", "slider", "menu",
         "menu_item", "tab", "dialog", "hover", "status")
DIALOG_ID = "d0"  # the one modal dialog a task may have; its children have it as parent
# Kinds whose value is part of the state (and whose change the checker watches).
VALUE_KINDS = ("field", "checkbox", "radio", "list", "slider", "tab")


@dataclass(frozen=True)
class Box:
    """x, y, width, height in logical pixels."""

    x: int
    y: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height

    def overlaps(self, other: Box) -> bool:
        return not (self.x + self.width <= other.x or other.x + other.width <= self.x
                    or self.y + self.height <= other.y or other.y + other.height <= self.y)

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.width, self.height]


@dataclass(frozen=True)
class Widget:
    """One widget. `value` is its initial value (text, checked, slider position, ...)."""

    id: str
    kind: str
    label: str
    box: Box
    value: Any = None
    parent: str | None = None  # the menu of a menu_item, the dialog of a dialog child
    group: str | None = None  # radio group
    page: str | None = None  # the tab (id) this widget lives on
    items: tuple[str, ...] = ()  # list rows
    colour: str = ""  # background, "#rrggbb"; empty: the window's palette

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["box"] = self.box.to_list()
        data["items"] = list(self.items)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Widget:
        data = dict(data)
        data["box"] = Box(*data["box"])
        data["items"] = tuple(data.get("items") or ())
        return cls(**data)


@dataclass(frozen=True)
class Layout:
    """A window: its size, where it goes on the screen, its look and its widgets."""

    width: int
    height: int
    place: tuple[float, float]  # where in the screen's free space, 0..1 per axis
    font_px: int  # label size
    background: str
    text_colour: str
    widgets: tuple[Widget, ...]
    list_row_px: int = 24  # height of one list row (fixed, so rows are predictable)

    def widget(self, widget_id: str) -> Widget:
        for w in self.widgets:
            if w.id == widget_id:
                return w
        raise KeyError(f"the layout has no widget {widget_id!r}")

    def position_on(self, screen_width: int, screen_height: int,
                    margin: int = 24) -> tuple[int, int]:
        """Top-left of the window on a screen of that logical size.

        The margin keeps the window off the screen's corners (pyautogui's fail-safe)
        and edges; a screen smaller than the window gets it at the margin."""
        free_x = max(0, screen_width - self.width - 2 * margin)
        free_y = max(0, screen_height - self.height - 2 * margin)
        return margin + round(free_x * self.place[0]), margin + round(free_y * self.place[1])

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "place": list(self.place),
                "font_px": self.font_px, "background": self.background,
                "text_colour": self.text_colour, "list_row_px": self.list_row_px,
                "widgets": [w.to_dict() for w in self.widgets]}

    @classmethod
    def from_dict(cls, data: dict) -> Layout:
        return cls(width=data["width"], height=data["height"], place=tuple(data["place"]),
                   font_px=data["font_px"], background=data["background"],
                   text_colour=data["text_colour"], list_row_px=data.get("list_row_px", 24),
                   widgets=tuple(Widget.from_dict(w) for w in data["widgets"]))


@dataclass(frozen=True)
class Goal:
    """What the checker requires.

    values:   widget id -> the value it must hold at the end; a slider's is [low, high].
    events:   each must have happened at least once: {"widget", "event"} and optionally
              "values" (widget id -> value they held at that moment: "Submit after typing").
    allowed:  widgets that may be activated (clicked, triggered); activating any other
              is an extra, harmful action. Values not in `values` must stay as they were.
    """

    values: dict[str, Any] = field(default_factory=dict)
    events: tuple[dict, ...] = ()
    allowed: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"values": dict(self.values), "events": [dict(e) for e in self.events],
                "allowed": list(self.allowed)}

    @classmethod
    def from_dict(cls, data: dict) -> Goal:
        return cls(values=dict(data.get("values") or {}),
                   events=tuple(dict(e) for e in data.get("events") or ()),
                   allowed=tuple(data.get("allowed") or ()))


@dataclass(frozen=True)
class Task:
    """One practice task. `kind` is "single" (one action) or "multi" (2-5 actions);
    `skill` names what it practises (click, double_click, type_submit, ...)."""

    seed: int
    kind: str
    skill: str
    instruction: str
    layout: Layout
    goal: Goal
    difficulty: int = 1

    def to_dict(self) -> dict:
        return {"seed": self.seed, "kind": self.kind, "skill": self.skill,
                "instruction": self.instruction, "difficulty": self.difficulty,
                "layout": self.layout.to_dict(), "goal": self.goal.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Task:
        return cls(seed=data["seed"], kind=data["kind"], skill=data["skill"],
                   instruction=data["instruction"], difficulty=data.get("difficulty", 1),
                   layout=Layout.from_dict(data["layout"]), goal=Goal.from_dict(data["goal"]))
