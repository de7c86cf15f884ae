"""The qwen3.5 dialect: Qwen3.5 / Holo3 `computer_use` calls in Qwen3-Coder XML, 0..1000.

Qwen3.5's chat template teaches tool calls as XML inside <tool_call> (the Qwen3-Coder
grammar; Holo3 and Holo-3.1, fine-tuned from Qwen3.5-35B-A3B / Qwen3.6-35B-A3B, keep it):

    <tool_call>
    <function=computer_use>
    <parameter=action>
    left_click
    </parameter>
    <parameter=coordinate>
    [500, 300]
    </parameter>
    </function>
    </tool_call>

Servers and older prompts also produce the Qwen3-VL JSON body
(`{"name": "computer_use", "arguments": {...}}`) inside the same tags; both are accepted,
one reply may mix them (the function may be called `computer`, as cua's qwen3.5 loop names
it). The tool is Qwen's `computer_use` (prompts.QWEN3VL_TOOL): the same
actions, and coordinates relative to the screenshot in 0..1000 as for Qwen3-VL (H company's
Holo3 documentation states the same range), so the
action mapping onto agent/actions.py is qwen3vl's (see agent/dialects/qwen3vl.py).

Parameter values: one newline after the opening and before the closing tag is layout and
is dropped; the string parameters are taken verbatim (text) or stripped (the names action
and status), the others
(coordinate, start_coordinate, keys, pixels, time) must be JSON (no NaN/Infinity). As
strict as the other dialects: an unknown function or parameter, a parameter given twice,
unclosed tags, or text after the tool calls raise ParseError. The one repair is a missing
final </tool_call>. Replies are written in the XML form, the one the model was trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent import actions as A
from agent.actions import ParseError
from agent.dialects.prompts import QWEN3VL_TOOL
from agent.dialects.qwen3vl import (
    _ARGUMENTS,
    CLOSE,
    OPEN,
    Qwen3VLDialect,
    _load_json,
    _to_action,
    action_arguments,
)
from agent.dialects.uitars_parser import split_think

if TYPE_CHECKING:
    pass

FUNCTION = "computer_use"
# cua's qwen3.5 loop declares the same tool as "computer": its calls are accepted too
FUNCTION_ALIASES = (FUNCTION, "computer")
STRING_PARAMETERS = ("action", "text", "status")  # schema type string: not JSON
ENUM_PARAMETERS = ("action", "status")  # names: surrounding spaces are layout too
HINT = (
    ". Reply with a short thought, then <tool_call> <function=computer_use> "
    "<parameter=action> ... </parameter> ... </function> </tool_call> (each tag on its own "
    "line) using the computer_use tool exactly as described."
)

_FUNCTION_OPEN = re.compile(r"<function=([^>\n]*)>")
_PARAMETER_OPEN = re.compile(r"<parameter=([^>\n]*)>")

# Qwen3.5's chat template: tools listed as JSON, calls answered in the XML grammar
_TOOLS_PREAMBLE = (
    "# Tools\n"
    "\n"
    "You have access to the following functions:\n"
    "\n"
    "<tools>\n"
    "{tools}\n"
    "</tools>\n"
    "\n"
    "If you choose to call a function ONLY reply in the following format with NO suffix:\n"
    "\n"
    "<tool_call>\n"
    "<function=example_function_name>\n"
    "<parameter=example_parameter_1>\n"
    "value_1\n"
    "</parameter>\n"
    "<parameter=example_parameter_2>\n"
    "a value may span\n"
    "several lines\n"
    "</parameter>\n"
    "</function>\n"
    "</tool_call>\n"
    "\n"
    "<IMPORTANT>\n"
    "Reminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> "
    "block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE "
    "the function call, but NOT after\n"
    "</IMPORTANT>"
)


def system_prompt() -> str:
    return _TOOLS_PREAMBLE.format(tools=json.dumps(QWEN3VL_TOOL, ensure_ascii=False))


def _layout_strip(value: str) -> str:
    """Drop the one newline the grammar puts after an opening and before a closing tag."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _xml_arguments(body: str) -> dict:
    """`<function=computer_use><parameter=...>...</parameter>...</function>` -> arguments."""
    m = _FUNCTION_OPEN.match(body)
    if m is None:
        raise ParseError("a tool call must hold <function=computer_use> or a JSON object")
    if m[1].strip() not in FUNCTION_ALIASES:
        raise ParseError(f"unknown function {m[1].strip()!r}; call computer_use")
    end = body.rfind("</function>")
    if end < 0:
        raise ParseError("the tool call's <function=computer_use> is never closed")
    if body[end + len("</function>"):].strip():
        raise ParseError("unexpected text after </function> inside the tool call")
    inner, pos, args = body[m.end():end], 0, {}
    while True:
        while pos < len(inner) and inner[pos].isspace():
            pos += 1
        if pos == len(inner):
            return args
        p = _PARAMETER_OPEN.match(inner, pos)
        if p is None:
            raise ParseError(f"expected <parameter=...> in the tool call, got "
                             f"{inner[pos:pos + 30]!r}")
        name = p[1].strip()
        close = inner.find("</parameter>", p.end())
        if close < 0:
            raise ParseError(f"<parameter={name}> is never closed")
        if name not in _ARGUMENTS:
            raise ParseError(f"computer_use has no argument {name!r}")
        if name in args:
            raise ParseError(f"parameter {name!r} is given twice")
        raw = _layout_strip(inner[p.end():close])
        if name in ENUM_PARAMETERS:
            raw = raw.strip()
        args[name] = raw if name in STRING_PARAMETERS else _json_value(raw, name)
        pos = close + len("</parameter>")


def _json_value(raw: str, name: str) -> Any:
    try:
        return _load_json(raw.strip())
    except ParseError as err:
        raise ParseError(f"parameter {name}: {err}") from None


def _json_arguments(body: str) -> dict:
    call = _load_json(body)
    if not isinstance(call, dict):
        raise ParseError("a tool call must be a JSON object with name and arguments")
    if call.get("name") not in FUNCTION_ALIASES:
        raise ParseError(f"unknown function {call.get('name')!r}; call computer_use")
    args = call.get("arguments")
    if isinstance(args, str):  # some servers pass arguments as a JSON string
        args = _load_json(args)
    if not isinstance(args, dict):
        raise ParseError("the tool call's arguments must be a JSON object")
    return args


def _tool_calls(text: str, start: int) -> list[dict]:
    """The arguments of every tool call from `start` on (text must end after them)."""
    calls, pos = [], start
    while pos < len(text):
        if not text.startswith(OPEN, pos):
            raise ParseError(f"unexpected text after the tool call: {text[pos:pos + 30]!r}")
        end = text.find(CLOSE, pos)
        body = text[pos + len(OPEN): end if end >= 0 else len(text)].strip()
        pos = len(text) if end < 0 else end + len(CLOSE)
        while pos < len(text) and text[pos].isspace():
            pos += 1
        calls.append(_json_arguments(body) if body.startswith("{") else _xml_arguments(body))
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
        thought = thought[len("thought:"):].strip()
    thought = "\n".join(part for part in (thinking, thought) if part)
    return A.Response(thought=thought, actions=tuple(actions), raw=text)


def _xml_value(name: str, value: Any) -> str:
    return value if name in STRING_PARAMETERS else json.dumps(value, ensure_ascii=False)


def format_call(args: dict) -> str:
    params = "".join(f"<parameter={k}>\n{_xml_value(k, v)}\n</parameter>\n"
                     for k, v in args.items())
    return f"{OPEN}\n<function={FUNCTION}>\n{params}</function>\n{CLOSE}"


class Qwen35Dialect(Qwen3VLDialect):
    """qwen3.5 (Qwen3.5 / Qwen3.6 / Holo3): Qwen3-VL's image sizes, history and 0..1000
    coordinates, with its own prompt and tool-call syntax. Satisfies agent.protocols.Dialect."""

    name = "qwen3.5"

    def system_prompt(self) -> str:
        return system_prompt()

    def parse(self, text: str, model_size: tuple[int, int]) -> A.Response:
        """model_size is unused: the coordinates are relative (0..1000)."""
        return parse_reply(text)

    def format_reply(self, thought: str, actions: Sequence[A.Action]) -> str:
        if not actions:
            raise ValueError("a reply needs at least one action")
        blocks = [format_call(args) for action in actions for args in action_arguments(action)]
        return "\n".join([thought.strip(), *blocks] if thought.strip() else blocks)
