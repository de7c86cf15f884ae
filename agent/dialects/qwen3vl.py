"""The qwen3-vl dialect: Qwen3-VL's `computer_use` function calls, coordinates 0..1000.

A reply is an optional thought followed by one or more

    <tool_call>
    {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [x, y]}}
    </tool_call>

blocks (the tool schema is in prompts.QWEN3VL_TOOL). The thought is the text before the
first tool call. Held to the same strictness as the UI-TARS parser: invalid JSON, an
unknown action or argument, a missing or out-of-range coordinate, or text after the
tool calls raise ParseError. The one repair is a missing final </tool_call>.

Mapping onto our vocabulary:
    left_click/double_click/triple_click/right_click/middle_click -> the clicks
    mouse_move -> Hover; key -> Hotkey; type -> Type (trailing newline -> enter)
    scroll -> Scroll up (pixels > 0) / down; hscroll -> right (pixels > 0) / left;
        |pixels| is the number of wheel clicks, as the cookbook executes it
    left_click_drag drags from where the cursor is, so it needs a start: the point of the
        action before it in the same reply (a mouse_move there merges into the Drag), or a
        `start_coordinate` argument; otherwise ParseError
    wait -> Wait(time, default 5 s); answer -> Finished(text)
    terminate success -> Finished(""); terminate failure -> CallUser (the model gives up:
        hand control back to the person)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent import actions as A
from agent.actions import ParseError
from agent.dialects import history as H
from agent.dialects.prompts import qwen3vl_system_prompt, qwen3vl_task
from agent.dialects.uitars_parser import split_think
from agent.frames import model_image_size
from agent.keys import parse_keys
from agent.protocols import HistoryTurn

if TYPE_CHECKING:
    from PIL.Image import Image

FACTOR = 32  # Qwen3-VL: 16-pixel patches merged 2x2 (qwen-vl-utils image_patch_size=16)
MIN_PIXELS = 4 * FACTOR * FACTOR  # qwen-vl-utils' defaults for factor 32
MAX_PIXELS = 16384 * FACTOR * FACTOR
EXTENT = 1000
OPEN, CLOSE = "<tool_call>", "</tool_call>"
FAILURE_MESSAGE = "The model could not complete the task (terminate: failure)."
HINT = (
    '. Reply with a short thought, then <tool_call>{"name": "computer_use", "arguments": '
    '{"action": ..., ...}}</tool_call> using the computer_use tool exactly as described.'
)

_CLICKS: dict[str, type[A.PointerAction]] = {
    "left_click": A.Click,
    "double_click": A.DoubleClick,
    "triple_click": A.TripleClick,
    "right_click": A.RightClick,
    "middle_click": A.MiddleClick,
    "mouse_move": A.Hover,
}
_ARGUMENTS = {
    "action",
    "keys",
    "text",
    "coordinate",
    "start_coordinate",
    "pixels",
    "time",
    "status",
}
ACTIONS = (
    *_CLICKS,
    "left_click_drag",
    "key",
    "type",
    "scroll",
    "hscroll",
    "wait",
    "terminate",
    "answer",
)


def _reject_constant(name: str) -> Any:
    raise ParseError(f"{name} is not a number")


def _load_json(body: str) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        if isinstance(err, ParseError):
            raise
        raise ParseError(f"the tool call is not valid JSON ({err})") from None


def _number(value: Any, what: str) -> float:
    """A JSON number that is finite (json parses 1e999 as inf) and not a boolean."""
    finite = False
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            finite = math.isfinite(float(value))
        except OverflowError:  # an integer too large for a float
            finite = False
    if not finite:
        raise ParseError(f"{what} must be a finite number, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, int) else str(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _point(value: Any, what: str) -> A.Point:
    if not isinstance(value, list) or len(value) != 2:
        raise ParseError(f"{what} must be [x, y], got {_short(value)}")
    x, y = (_number(v, what) for v in value)
    if not (0 <= x <= EXTENT and 0 <= y <= EXTENT):
        raise ParseError(
            f"{what} {_short(value)} is outside the screen: x and y must be within 0..1000"
        )
    return A.Point(x, y)


def _last_point(actions: list[A.Action]) -> A.Point | None:
    if not actions:
        return None
    last = actions[-1]
    if isinstance(last, A.PointerAction):
        return last.point
    if isinstance(last, A.Drag):
        return last.end
    return last.point if isinstance(last, A.Scroll) else None


def _to_action(args: dict, actions: list[A.Action]) -> None:
    """Append the action of one tool call (a drag may merge the mouse_move before it)."""
    unknown = sorted(set(args) - _ARGUMENTS)
    if unknown:
        raise ParseError(f"computer_use has no argument {unknown[0]!r}")
    action = args.get("action")
    if action not in ACTIONS:
        raise ParseError(f"unknown action {_short(action)}; use one of: " + ", ".join(ACTIONS))

    def required(key: str) -> Any:
        if key not in args:
            raise ParseError(f"action={action} needs {key}")
        return args[key]

    if action in _CLICKS:
        actions.append(_CLICKS[action](point=_point(required("coordinate"), "coordinate")))
    elif action == "left_click_drag":
        end = _point(required("coordinate"), "coordinate")
        if "start_coordinate" in args:
            start = _point(args["start_coordinate"], "start_coordinate")
        elif (start := _last_point(actions)) is None:
            raise ParseError(
                "left_click_drag starts where the cursor is, which this reply does not say: "
                "put a mouse_move to the start point before it in the same reply"
            )
        if actions and type(actions[-1]) is A.Hover and actions[-1].point == start:
            actions.pop()  # mouse_move + left_click_drag is one drag
        actions.append(A.Drag(start=start, end=end))
    elif action == "key":
        keys = required("keys")
        if not isinstance(keys, list | str):
            raise ParseError(f"keys must be a list of key names, got {_short(keys)}")
        actions.append(A.Hotkey(keys=parse_keys(keys, what="keys")))
    elif action in ("type", "answer"):
        text = required("text")
        if not isinstance(text, str):
            raise ParseError(f"action={action} needs text as a string")
        if action == "answer":
            actions.append(A.Finished(content=text))
        else:
            stripped = text.rstrip("\n")
            actions.append(A.Type(text=stripped, enter=stripped != text))
    elif action in ("scroll", "hscroll"):
        pixels = _number(required("pixels"), "pixels")
        if round(pixels) == 0:
            raise ParseError("pixels must be a non-zero number of scroll steps")
        if action == "scroll":
            direction = "up" if pixels > 0 else "down"
        else:
            direction = "right" if pixels > 0 else "left"
        point = _point(args["coordinate"], "coordinate") if "coordinate" in args else None
        actions.append(A.Scroll(direction, point=point, amount=abs(round(pixels))))
    elif action == "wait":
        seconds = _number(args.get("time", 5.0), "time")
        if seconds < 0:
            raise ParseError("time must not be negative")
        actions.append(A.Wait(seconds=seconds))
    else:  # terminate
        status = required("status")
        if status == "success":
            actions.append(A.Finished())
        elif status == "failure":
            actions.append(A.CallUser(content=FAILURE_MESSAGE))
        else:
            raise ParseError(
                f"terminate status must be 'success' or 'failure', got {_short(status)}"
            )


def _tool_calls(text: str, start: int) -> list[dict]:
    """The arguments of every tool call from `start` on (text must end after them)."""
    calls = []
    pos = start
    while pos < len(text):
        if not text.startswith(OPEN, pos):
            raise ParseError(f"unexpected text after the tool call: {text[pos : pos + 30]!r}")
        end = text.find(CLOSE, pos)
        body = text[pos + len(OPEN) : end if end >= 0 else len(text)]
        pos = len(text) if end < 0 else end + len(CLOSE)
        while pos < len(text) and text[pos].isspace():
            pos += 1
        call = _load_json(body.strip())
        if not isinstance(call, dict):
            raise ParseError("a tool call must be a JSON object with name and arguments")
        if call.get("name") != "computer_use":
            raise ParseError(f"unknown function {call.get('name')!r}; call computer_use")
        args = call.get("arguments")
        if isinstance(args, str):  # some servers pass arguments as a JSON string
            args = _load_json(args)
        if not isinstance(args, dict):
            raise ParseError("the tool call's arguments must be a JSON object")
        calls.append(args)
    return calls


def parse_reply(text: str) -> A.Response:
    if not isinstance(text, str):
        raise ParseError(f"a reply must be text, got {type(text).__name__}")
    try:
        body = text.strip()
        first_call = body.find(OPEN)
        thinking, body = split_think(body, first_call if first_call >= 0 else None)
        start = body.find(OPEN)
        if start < 0:
            raise ParseError("no <tool_call> found: every reply must call computer_use")
        actions: list[A.Action] = []
        for args in _tool_calls(body, start):
            _to_action(args, actions)
    except ParseError as err:
        raise ParseError(f"{err}{HINT}") from None
    thought = body[:start].strip()
    if thought.lower().startswith("thought:"):
        thought = thought[len("thought:") :].strip()
    return A.Response(thought=thought, actions=tuple(actions), raw=text, thinking=thinking)


# --- writing replies --------------------------------------------------------------------


def _xy(point: A.Point) -> list[float]:
    return [int(v) if isinstance(v, float) and v.is_integer() else v for v in (point.x, point.y)]


def action_arguments(action: A.Action) -> list[dict]:
    """The computer_use arguments for one action (a drag takes two calls)."""
    for name, cls in _CLICKS.items():
        if type(action) is cls:
            return [{"action": name, "coordinate": _xy(action.point)}]
    if isinstance(action, A.Drag):
        return [
            {"action": "mouse_move", "coordinate": _xy(action.start)},
            {"action": "left_click_drag", "coordinate": _xy(action.end)},
        ]
    if isinstance(action, A.Hotkey):
        return [{"action": "key", "keys": list(action.keys)}]
    if isinstance(action, A.Type):
        return [{"action": "type", "text": action.text + "\n" * action.enter}]
    if isinstance(action, A.Scroll):
        sign = 1 if action.direction in ("up", "right") else -1
        args: dict = {
            "action": "scroll" if action.direction in ("up", "down") else "hscroll",
            "pixels": sign * action.amount,
        }
        if action.point is not None:
            args["coordinate"] = _xy(action.point)
        return [args]
    if isinstance(action, A.Wait):
        return [{"action": "wait", "time": action.seconds}]
    if isinstance(action, A.Finished):
        if action.content:
            return [{"action": "answer", "text": action.content}]
        return [{"action": "terminate", "status": "success"}]
    if isinstance(action, A.CallUser):
        return [{"action": "terminate", "status": "failure"}]
    raise ValueError(f"qwen3-vl has no action for {action.name!r}")


class Qwen3VLDialect:
    """qwen3-vl. Satisfies agent.protocols.Dialect."""

    name = "qwen3-vl"
    space = "relative1000"
    image_factor = FACTOR
    min_pixels = MIN_PIXELS

    def __init__(
        self, *, history_n: int = 5, max_pixels: int | None = None, language: str = "English"
    ) -> None:
        if history_n < 1:
            raise ValueError(f"history_n must be at least 1 (the new screenshot), got {history_n}")
        self.history_n = history_n
        self.max_pixels = int(max_pixels or MAX_PIXELS)
        if self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels must be at least {self.min_pixels}")
        self.language = language

    def __repr__(self) -> str:
        return f"<{self.name} dialect history_n={self.history_n} max_pixels={self.max_pixels}>"

    def model_size(self, width: int, height: int) -> tuple[int, int]:
        return model_image_size(
            width, height, factor=FACTOR, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )

    def system_prompt(self) -> str:
        return qwen3vl_system_prompt()

    def build_messages(self, task: str, history: Sequence[HistoryTurn], image: Image) -> list[dict]:
        for picture in [turn.image for turn in history] + [image]:
            H.check_resized(picture, FACTOR, self.min_pixels, self.max_pixels, self.name)
        return [
            H.message("system", H.text_part(self.system_prompt())),
            H.message("user", H.text_part(qwen3vl_task(task, self.language))),
            *H.step_messages(history, image, self.history_n),
        ]

    def parse(self, text: str, model_size: tuple[int, int]) -> A.Response:
        """model_size is unused: Qwen3-VL's coordinates are relative (0..1000)."""
        return parse_reply(text)

    def format_reply(self, thought: str, actions: Sequence[A.Action]) -> str:
        if not actions:
            raise ValueError("a reply needs at least one action")
        blocks = [
            OPEN
            + "\n"
            + json.dumps({"name": "computer_use", "arguments": args}, ensure_ascii=False)
            + "\n"
            + CLOSE
            for action in actions
            for args in action_arguments(action)
        ]
        return "\n".join([thought.strip(), *blocks] if thought.strip() else blocks)
