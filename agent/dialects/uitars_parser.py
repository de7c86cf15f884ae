"""The UI-TARS reply parser: "Thought: ... Action: click(...)" -> Response, or ParseError.

The contract (issue #2), in the order the parser applies it:

1. Whitespace and a ``` fence around the whole reply are ignored. A leading
   <think>...</think> block is thinking, never executed; it is returned apart
   (Response.thinking), not merged into the thought.
2. The action text is everything after the LAST `Action:` (ASCII ':' or full-width '：')
   that starts a line. A model quoting its previous action in the thought ("... my last
   Action: type(content='it's ...") cannot move the start, whatever its quotes do, and
   text before the marker is never executed. Only a reply with no such line falls back to
   the last `Action:` anywhere that is not inside a quoted value of an earlier action.
3. The thought is the text before the marker without its `Thought:` label; for a
   "Reflection: ... Action_Summary: ..." reply it is the Action_Summary text (as in the
   official ui-tars parser) and the reflection is returned apart (Response.reflection).
4. Calls separated by a blank line are separate actions, in order (see callsyntax).
5. Each call must be a known action with its known parameters; coordinates must be
   finite numbers inside the model's coordinate extent (never clamped here). A point
   whose closing parenthesis is missing inside the quotes, start_box='(573,322' (the
   UI-TARS repository's own example reply), is read as closed.

Anything else raises ParseError with a message fit to show the model, and nothing from
that reply is executed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from agent import actions as A
from agent.actions import ParseError
from agent.dialects.callsyntax import Call, decode_string, parse_calls
from agent.keys import parse_keys

# "Action:" not preceded by a word character (so Action_Summary: and PreviousAction: are
# not markers), or a `= '` / `= "` that opens a quoted value to skip over.
_MARKER_OR_VALUE = re.compile(
    r"(?P<marker>(?<![A-Za-z0-9_])Action[ \t]*[:：])|(?P<value>=[ \t\r\n]*['\"])"
)
_MARKER = re.compile(r"(?<![A-Za-z0-9_])Action[ \t]*[:：]")
_LINE_MARKER = re.compile(r"^[ \t]*(?P<word>Action[ \t]*[:：])", re.MULTILINE)
_REFLECTION_LABEL = re.compile(r"\A\s*Reflection[ \t]*[:：]\s*")
_SUMMARY_LABEL = re.compile(r"(?<![A-Za-z0-9_])Action_Summary[ \t]*[:：]\s*")
_VALUE_END = re.compile(r"[ \t]*(?:[),]|$)")
FENCE = "```"
_THOUGHT_LABEL = re.compile(r"\A\s*Thought[ \t]*[:：]\s*")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_BOX_TOKENS = ("<|box_start|>", "<|box_end|>")
_TAGGED = {"<point>": "</point>", "<bbox>": "</bbox>"}

# Parameter spellings -> canonical names.
_PARAM_ALIASES = {
    "point": "start_box",
    "start_point": "start_box",
    "end_point": "end_box",
    "hotkey": "key",
}


def strip_fence(text: str) -> str:
    """Remove whitespace and a ``` fence around the text.

    The opening line (``` or ```lang) and the closing ``` are each removed when present,
    so a reply cut off before its closing fence still parses.
    """
    text = text.strip()
    if text.startswith(FENCE):
        first_newline = text.find("\n")
        text = text[first_newline + 1 :] if first_newline >= 0 else text[len(FENCE) :]
    if text.endswith(FENCE):
        text = text[: -len(FENCE)]
    return text.strip()


def split_think(text: str, actions_from: int | None = None) -> tuple[str, str]:
    """(thinking, rest): a leading <think>...</think> block, or text up to a bare </think>.

    Some chat templates put the opening <think> in the prompt, so the reply starts with
    the thinking itself. A bare </think> counts only before `actions_from` (where the
    actions begin), so typing the text "</think>" stays an ordinary action.
    """
    if text.startswith("<think>"):
        end = text.find("</think>")
        if end < 0:
            raise ParseError("the reply ended inside <think> without an action")
        return text[len("<think>") : end].strip(), text[end + len("</think>") :].strip()
    end = text.find("</think>")
    if 0 <= end < (len(text) if actions_from is None else actions_from):
        return text[:end].strip(), text[end + len("</think>") :].strip()
    return "", text


def find_action(text: str) -> tuple[int, int] | None:
    """(start, end) of the action marker: the last `Action:` that starts a line.

    Quotes are not looked at here: a thought may quote anything, balanced or not. A reply
    that writes its marker mid-line ("Thought: ok. Action: wait()") has no such line and
    falls back to the last inline marker outside quoted values.
    """
    markers = list(_LINE_MARKER.finditer(text))
    if markers:
        return markers[-1].start("word"), markers[-1].end("word")
    return _find_inline_action(text)


def _find_inline_action(text: str) -> tuple[int, int] | None:
    """(start, end) of the last `Action:` marker that is not inside a quoted value."""
    first = _MARKER.search(text)
    if not first:
        return None
    chosen = (first.start(), first.end())
    pos = first.end()
    while True:
        m = _MARKER_OR_VALUE.search(text, pos)
        if not m:
            return chosen
        if m.group("marker"):
            chosen = (m.start(), m.end())
            pos = m.end()
        else:  # skip the quoted value so an "Action:" inside it is not a marker
            pos = _skip_value(text, m.end() - 1)


def _skip_value(text: str, start: int) -> int:
    """Index after the quoted value opening at `start`, for finding markers only.

    Looser than callsyntax.scan_string (a quote followed by ')' or ',' ends the value even
    mid-line) so that a thought quoting an earlier action, "click(start_box='(1,1)') was
    wrong", does not hide the real marker after it.
    """
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == quote and _VALUE_END.match(text, i + 1):
            return i + 1
        else:
            i += 1
    return len(text)


@dataclass(frozen=True)
class SplitReply:
    """A raw reply cut into its parts; only `action_text` is ever executed."""

    thought: str
    action_text: str
    thinking: str = ""
    reflection: str = ""


def split_thought(before: str) -> tuple[str, str]:
    """(thought, reflection) of the text before the action marker."""
    if _REFLECTION_LABEL.match(before):
        rest = _REFLECTION_LABEL.sub("", before, count=1)
        summary = _SUMMARY_LABEL.search(rest)
        if summary is None:
            return "", rest.strip()
        return rest[summary.end() :].strip(), rest[: summary.start()].strip()
    summary = _SUMMARY_LABEL.match(before.lstrip())
    if summary is not None:
        return before.lstrip()[summary.end() :].strip(), ""
    return _THOUGHT_LABEL.sub("", before, count=1).strip(), ""


def split_reply(text: str) -> SplitReply:
    """The thought, thinking, reflection and action text of a raw reply."""
    body = strip_fence(text)
    first_marker = _MARKER.search(body)
    thinking, body = split_think(body, first_marker.start() if first_marker else None)
    marker = find_action(body)
    if marker is None:
        raise ParseError(
            "no 'Action:' found: end your reply with a line 'Action: <one action call>'"
        )
    before, action_text = body[: marker[0]], body[marker[1] :]
    thought, reflection = split_thought(before)
    return SplitReply(thought, strip_fence(action_text), thinking, reflection)


# --- values -----------------------------------------------------------------------------


def parse_number(token: str, what: str) -> int | float:
    """A plain decimal number; NaN, inf, exponents, booleans and words are errors."""
    if len(token) > 24 or not _NUMBER.fullmatch(token):
        raise ParseError(f"{what}: {token[:24]!r} is not a number")
    value: int | float = float(token) if "." in token else int(token)
    if not math.isfinite(value):
        raise ParseError(f"{what}: {token!r} is not a finite number")
    return value


def parse_box(raw: str, what: str) -> list[int | float]:
    """The numbers of a coordinate value in any of the accepted syntaxes."""
    value = raw.strip()
    if value.startswith(_BOX_TOKENS[0]):
        if not value.endswith(_BOX_TOKENS[1]):
            raise ParseError(f"{what}: {_BOX_TOKENS[0]} without a closing {_BOX_TOKENS[1]}")
        value = value[len(_BOX_TOKENS[0]) : -len(_BOX_TOKENS[1])].strip()
    for open_tag, close_tag in _TAGGED.items():
        if value.startswith(open_tag) and value.endswith(close_tag):
            parts = value[len(open_tag) : -len(close_tag)].split()
            break
    else:
        if value[:1] == "(" and ")" not in value:
            value += ")"  # '(573,322': the closing parenthesis lost inside the quotes
        if len(value) >= 2 and (value[0], value[-1]) in (("(", ")"), ("[", "]")):
            parts = [p.strip() for p in value[1:-1].split(",")]
        else:
            raise ParseError(
                f"{what}: {raw!r} is not a coordinate; write '<|box_start|>(x,y)<|box_end|>'"
            )
    numbers = [parse_number(p, what) for p in parts]
    if len(numbers) not in (2, 4):
        raise ParseError(
            f"{what}: expected 2 numbers (a point) or 4 (a box), got {len(numbers)} in {raw!r}"
        )
    return numbers


class CoordinateCheck:
    """Turns a coordinate value into a model-space Point inside the model's extent."""

    def __init__(self, extent: tuple[float, float], unit: str) -> None:
        self.extent = extent
        self.unit = unit  # how the extent is described to the model

    def point(self, raw: str, what: str) -> A.Point:
        numbers = parse_box(raw, what)
        width, height = self.extent
        xs, ys = numbers[0::2], numbers[1::2]
        if not all(0 <= x <= width for x in xs) or not all(0 <= y <= height for y in ys):
            raise ParseError(
                f"{what} {raw.strip()!r} is outside the screen: x must be within 0..{width:g} "
                f"and y within 0..{height:g} ({self.unit})"
            )
        if len(numbers) == 2:
            return A.Point(numbers[0], numbers[1])
        return A.Point((xs[0] + xs[1]) / 2, (ys[0] + ys[1]) / 2)


# --- actions ----------------------------------------------------------------------------

# name -> (required params, optional params). Canonical parameter names.
_SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "click": (("start_box",), ()),
    "left_single": (("start_box",), ()),
    "left_double": (("start_box",), ()),
    "right_single": (("start_box",), ()),
    "hover": (("start_box",), ()),
    "drag": (("start_box", "end_box"), ()),
    "scroll": (("direction",), ("start_box",)),
    "hotkey": (("key",), ()),
    "press": (("key",), ()),
    "release": (("key",), ()),
    "type": (("content",), ()),
    "wait": ((), ()),
    "finished": ((), ("content",)),
    "call_user": ((), ("content",)),
    "long_press": (("start_box",), ("time",)),
    "open_app": (("app_name",), ()),
    "press_home": ((), ()),
    "press_back": ((), ()),
}
KNOWN_ACTIONS = tuple(_SIGNATURES)
_POINTER = {
    "click": A.Click,
    "left_single": A.Click,
    "left_double": A.DoubleClick,
    "right_single": A.RightClick,
    "hover": A.Hover,
    "long_press": A.LongPress,
}
_KEY_ACTIONS: dict[str, type[A.Hotkey] | type[A.Press] | type[A.Release]] = {
    "hotkey": A.Hotkey,
    "press": A.Press,
    "release": A.Release,
}


def _canonical_args(call: Call) -> dict[str, str]:
    if call.name not in _SIGNATURES:
        raise ParseError(f"unknown action {call.name!r}; use one of: " + ", ".join(KNOWN_ACTIONS))
    required, optional = _SIGNATURES[call.name]
    args: dict[str, str] = {}
    for key, value in call.args.items():
        canonical = _PARAM_ALIASES.get(key, key)
        if canonical in args:
            raise ParseError(f"in {call.name}(...): {key} repeats another coordinate/key")
        if canonical not in required + optional:
            allowed = ", ".join(required + optional) or "no parameters"
            raise ParseError(f"{call.name}(...) has no parameter {key!r} (it takes {allowed})")
        args[canonical] = value
    missing = [k for k in required if k not in args]
    if missing:
        raise ParseError(f"{call.name}(...) needs {', '.join(missing)}")
    return args


def decode_type_content(raw: str) -> tuple[str, bool]:
    """type() content -> (text, enter): trailing newline(s) mean 'press Enter after'."""
    text = decode_string(raw)
    stripped = text.rstrip("\n")
    if stripped != text and stripped.endswith("\r"):
        stripped = stripped[:-1]
    return stripped, stripped != text


def call_to_action(call: Call, coords: CoordinateCheck) -> A.Action:
    args = _canonical_args(call)
    name = call.name

    def point(key: str) -> A.Point:
        return coords.point(args[key], f"{name}(...) {key}")

    if name in _POINTER:
        return _POINTER[name](point=point("start_box"))
    if name == "drag":
        return A.Drag(start=point("start_box"), end=point("end_box"))
    if name == "scroll":
        direction = decode_string(args["direction"]).strip().lower()
        if direction not in A.SCROLL_DIRECTIONS:
            raise ParseError(
                f"scroll direction {direction!r} is not one of: " + ", ".join(A.SCROLL_DIRECTIONS)
            )
        return A.Scroll(direction, point=point("start_box") if "start_box" in args else None)
    if name in ("hotkey", "press", "release"):
        keys = parse_keys(decode_string(args["key"]), what=f"{name}(...) key")
        return _KEY_ACTIONS[name](keys=keys)
    if name == "type":
        text, enter = decode_type_content(args["content"])
        return A.Type(text=text, enter=enter)
    if name == "wait":
        return A.Wait()
    if name == "finished":
        return A.Finished(content=decode_string(args.get("content", "")))
    if name == "call_user":
        return A.CallUser(content=decode_string(args.get("content", "")))
    if name == "open_app":
        return A.OpenApp(app_name=decode_string(args["app_name"]))
    return A.PressHome() if name == "press_home" else A.PressBack()


def parse_reply(text: str, coords: CoordinateCheck, *, hint: str = "") -> A.Response:
    """Parse a whole UI-TARS reply. `hint` is appended to error messages for the model."""
    if not isinstance(text, str):
        raise ParseError(f"a reply must be text, got {type(text).__name__}")
    try:
        parts = split_reply(text)
        calls = parse_calls(parts.action_text, KNOWN_ACTIONS)
        actions = tuple(call_to_action(call, coords) for call in calls)
    except ParseError as err:
        raise ParseError(f"{err}{hint}") from None
    return A.Response(
        thought=parts.thought,
        actions=actions,
        raw=text,
        thinking=parts.thinking,
        reflection=parts.reflection,
    )
