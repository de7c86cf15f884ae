"""The closed action vocabulary: every thing the agent can do, as frozen dataclasses.

A model reply is parsed into these and nothing else, so model text can never become
code. Pointer actions carry their coordinates twice: `point` in the model's space (as
the dialect parsed it) and `screen` in virtual-desktop logical pixels (filled in by
`frames.to_screen` once the observation's Frame is known). `screen` is None until then.

Names (`Action.name`) follow UI-TARS; Qwen3-VL's extra ones (triple and middle click)
are added. Mobile actions are parsed so they can be refused with a clear reason.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Point:
    """A point in some coordinate space; which one is said by the field holding it."""

    x: float
    y: float

    def __post_init__(self) -> None:
        for value in (self.x, self.y):
            # bool is an int subclass: reject it explicitly, as well as NaN/inf.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"coordinate must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"coordinate must be finite, got {value!r}")

    def rounded(self) -> tuple[int, int]:
        return round(self.x), round(self.y)


@dataclass(frozen=True)
class Action:
    """Base of every action. `name` is the action's name in UI-TARS' action space."""

    name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: {"type": name, ...fields}; points as [x, y]."""
        out: dict[str, Any] = {"type": self.name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Point):
                value = [value.x, value.y]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class PointerAction(Action):
    """An action at one point: `point` in model space, `screen` in desktop pixels."""

    point: Point
    screen: Point | None = None


@dataclass(frozen=True)
class Click(PointerAction):
    name: ClassVar[str] = "click"


@dataclass(frozen=True)
class DoubleClick(PointerAction):
    name: ClassVar[str] = "left_double"


@dataclass(frozen=True)
class TripleClick(PointerAction):
    name: ClassVar[str] = "left_triple"


@dataclass(frozen=True)
class RightClick(PointerAction):
    name: ClassVar[str] = "right_single"


@dataclass(frozen=True)
class MiddleClick(PointerAction):
    name: ClassVar[str] = "middle_single"


@dataclass(frozen=True)
class Hover(PointerAction):
    name: ClassVar[str] = "hover"


@dataclass(frozen=True)
class Drag(Action):
    """Press at `start`, move to `end`, release. Both in model space; screen_* mapped."""

    name: ClassVar[str] = "drag"
    start: Point
    end: Point
    screen_start: Point | None = None
    screen_end: Point | None = None


SCROLL_DIRECTIONS = ("up", "down", "left", "right")


@dataclass(frozen=True)
class Scroll(Action):
    """Scroll in `direction`, at `point` when given (else wherever the pointer is)."""

    name: ClassVar[str] = "scroll"
    direction: str
    point: Point | None = None
    screen: Point | None = None
    amount: int = 5  # wheel clicks; UI-TARS has no amount, so a sensible default

    def __post_init__(self) -> None:
        if self.direction not in SCROLL_DIRECTIONS:
            raise ValueError(f"scroll direction must be one of {SCROLL_DIRECTIONS}")


@dataclass(frozen=True)
class Hotkey(Action):
    """Press keys together, e.g. ("ctrl", "c"); released in reverse order."""

    name: ClassVar[str] = "hotkey"
    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.keys or not all(isinstance(k, str) and k for k in self.keys):
            raise ValueError("hotkey needs at least one non-empty key")


@dataclass(frozen=True)
class Press(Action):
    """Hold keys down (UI-TARS `press`): paired with a later `release`."""

    name: ClassVar[str] = "press"
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Release(Action):
    name: ClassVar[str] = "release"
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Type(Action):
    """Type `text` exactly as given; `enter` presses Enter afterwards."""

    name: ClassVar[str] = "type"
    text: str
    enter: bool = False


@dataclass(frozen=True)
class Wait(Action):
    name: ClassVar[str] = "wait"
    seconds: float = 5.0


@dataclass(frozen=True)
class Finished(Action):
    """The model says the task is done; `content` is its answer or summary."""

    name: ClassVar[str] = "finished"
    content: str = ""


@dataclass(frozen=True)
class CallUser(Action):
    """The model hands control to the person (needs information or help)."""

    name: ClassVar[str] = "call_user"
    content: str = ""


# Mobile actions: parsed so that a desktop run can refuse them with a clear reason.
@dataclass(frozen=True)
class LongPress(PointerAction):
    name: ClassVar[str] = "long_press"


@dataclass(frozen=True)
class OpenApp(Action):
    name: ClassVar[str] = "open_app"
    app_name: str = ""


@dataclass(frozen=True)
class PressHome(Action):
    name: ClassVar[str] = "press_home"


@dataclass(frozen=True)
class PressBack(Action):
    name: ClassVar[str] = "press_back"


MOBILE_ACTIONS = (LongPress, OpenApp, PressHome, PressBack)
TERMINAL_ACTIONS = (Finished, CallUser)


def is_mobile(action: Action) -> bool:
    return isinstance(action, MOBILE_ACTIONS)


@dataclass(frozen=True)
class Response:
    """One parsed model reply: the thought (never executed) and the actions, in order.

    `thinking` is a <think>...</think> block and `reflection` the Reflection: part of a
    "Reflection: ... Action_Summary: ..." reply, each kept apart from the thought (the
    short statement of what the model does next) and, like it, never executed.
    """

    thought: str
    actions: tuple[Action, ...] = field(default_factory=tuple)
    raw: str = ""
    thinking: str = ""
    reflection: str = ""


class ParseError(ValueError):
    """A model reply that cannot be executed. The message is fit to show the model."""
