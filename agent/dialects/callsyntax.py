"""A small hand-written reader for UI-TARS' call syntax: `name(key='value', ...)`.

Why hand-written: model text must never reach eval/ast.literal_eval, and the grammar the
models really produce is looser than Python's in a few known ways (bare quotes inside a
string, raw newlines in a string, a missing final parenthesis) while much stricter in
others (only quoted string values). A Python parser would reject good replies and
accept code; this reader accepts exactly:

    actions := call (BLANK_LINE call)*     BLANK_LINE: newline, optional spaces, newline
    call    := NAME '(' [arg (',' arg)* [',']] ')'     whitespace allowed between tokens,
    arg     := NAME '=' STRING                         newlines too inside the parentheses
    STRING  := QUOTE char* QUOTE                       QUOTE: ' or ", the same at both ends

A backslash escapes the character after it (so \\' never ends a string). Any other
delimiter quote inside the string ends it only when what follows makes sense after a
value: `)` and then the end of the line, `, name=`, or the end of the text. Otherwise it
is a bare quote belonging to the text ("it's"). The one repair: when the text ends where
the final `)` should be, the call is taken as closed.

Free-text calls (type, finished, call_user: `content` is their only parameter) are read
differently, because models type code into them without escaping its quotes:
`type(content='f(a, name='x')')` or `type(content='print('hi')\nprint('bye')')`. Every
unescaped quote followed by `)` (or by the end of the text) is a possible end of the
content; the first one under which the whole action text parses, with `content` as the
only argument, is chosen.

Decoding a string (`decode_string`) turns \\' \\" \\n \\\\ into ' " newline backslash and
keeps every other backslash as written, so a Windows path like C:\\Users survives.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from agent.actions import ParseError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
QUOTES = ("'", '"')
_INLINE_WS = " \t"
_ANY_WS = " \t\r\n"
# After a closing quote: `)` then end of line/text, `, name=`, or end of text.
_AFTER_VALUE = re.compile(
    r"[ \t\r\n]*(?:\)[ \t]*(?:\r?\n|$)|,[ \t\r\n]*[A-Za-z_][A-Za-z0-9_]*[ \t]*=|$)"
)
_ESCAPES = {"'": "'", '"': '"', "n": "\n", "\\": "\\"}
TEXT_CALLS = frozenset({"type", "finished", "call_user"})
# A quote that may end a free-text value: the call closes after it, or the text ends.
_TEXT_VALUE_END = {q: re.compile(re.escape(q) + r"[ \t\r\n]*(?:\)|\Z)") for q in QUOTES}
_REPEATED_CONTENT = {
    q: re.compile(re.escape(q) + r"[ \t\r\n]*,[ \t\r\n]*content[ \t\r\n]*=[ \t\r\n]*['\"]")
    for q in QUOTES
}
_CONTENT_KEY = re.compile(r"content[ \t\r\n]*=[ \t\r\n]*(?=['\"])")
# Alternative readings tried per reply at most: each is cheap, but a crafted reply could
# otherwise make the search quadratic.
MAX_READINGS = 2000


@dataclass(frozen=True)
class Call:
    """One parsed call: its name and raw (undecoded) string arguments, in order."""

    name: str
    args: dict[str, str]
    repaired: bool = False  # True when the final ')' was missing


def snippet(text: str, pos: int, width: int = 30) -> str:
    """A short excerpt of `text` from `pos`, for error messages."""
    part = text[pos : pos + width]
    return part + ("..." if len(text) > pos + width else "")


def scan_string(text: str, start: int) -> tuple[str, int, bool]:
    """Read the string whose opening quote is at `start`.

    Returns (raw body, index after the closing quote, terminated). Unterminated strings
    return terminated=False and the index of the end of the text.
    """
    quote = text[start]
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote and _AFTER_VALUE.match(text, i + 1):
            return text[start + 1 : i], i + 1, True
        i += 1
    return text[start + 1 :], n, False


def decode_string(raw: str) -> str:
    """Decode a string body: \\' \\" \\n \\\\ are escapes, every other backslash stays."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\" and i + 1 < n and raw[i + 1] in _ESCAPES:
            out.append(_ESCAPES[raw[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def encode_string(text: str) -> str:
    """The inverse of decode_string for a single-quoted value (used to write replies)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _skip(text: str, pos: int, chars: str) -> int:
    n = len(text)
    while pos < n and text[pos] in chars:
        pos += 1
    return pos


def read_call(text: str, pos: int) -> tuple[Call, int]:
    """Read one call starting at `pos`; returns it and the index after it."""
    m = NAME.match(text, pos)
    if not m:
        raise ParseError(f"expected an action call like click(...), found {snippet(text, pos)!r}")
    name = m.group()
    pos = _skip(text, m.end(), _INLINE_WS)
    if pos >= len(text) or text[pos] != "(":
        raise ParseError(f"expected '(' after {name}, found {snippet(text, pos)!r}")
    pos += 1
    args: dict[str, str] = {}
    while True:
        pos = _skip(text, pos, _ANY_WS)
        if pos >= len(text):
            return Call(name, args, repaired=True), pos
        if text[pos] == ")":
            return Call(name, args), pos + 1
        km = NAME.match(text, pos)
        if not km:
            raise ParseError(
                f"in {name}(...): expected a parameter name or ')', found {snippet(text, pos)!r}"
            )
        key = km.group()
        pos = _skip(text, km.end(), _ANY_WS)
        if pos >= len(text) or text[pos] != "=":
            raise ParseError(f"in {name}(...): expected '=' after {key}")
        pos = _skip(text, pos + 1, _ANY_WS)
        if pos >= len(text) or text[pos] not in QUOTES:
            raise ParseError(
                f"in {name}(...): the value of {key} must be a quoted string, "
                f"found {snippet(text, pos)!r}"
            )
        body, pos, terminated = scan_string(text, pos)
        if not terminated:
            raise ParseError(f"in {name}(...): the string value of {key} is never closed")
        if key in args:
            raise ParseError(f"in {name}(...): {key} is given twice")
        args[key] = body
        pos = _skip(text, pos, _ANY_WS)
        if pos >= len(text):
            return Call(name, args, repaired=True), pos
        if text[pos] == ")":
            return Call(name, args), pos + 1
        if text[pos] != ",":
            raise ParseError(
                f"in {name}(...): expected ',' or ')' after {key}=..., found {snippet(text, pos)!r}"
            )
        pos += 1


def _escaped(text: str, pos: int, start: int) -> bool:
    """Whether the character at `pos` follows an odd run of backslashes (after `start`)."""
    run = 0
    while pos - run - 1 > start and text[pos - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _text_readings(text: str, name: str, quote_at: int) -> Iterator[tuple[Call, int]]:
    """Each possible end of a free-text call's content, first to last."""
    quote = text[quote_at]
    repeated = _REPEATED_CONTENT[quote].search(text, quote_at + 1)
    for m in _TEXT_VALUE_END[quote].finditer(text, quote_at + 1):
        if _escaped(text, m.start(), quote_at):
            continue
        if repeated is not None and repeated.end() <= m.start():
            # content='a', content='b' is two values, not one text: never guess which.
            raise ParseError(f"in {name}(...): content is given twice")
        closed = text[m.end() - 1 : m.end()] == ")"
        yield Call(name, {"content": text[quote_at + 1 : m.start()]}, not closed), m.end()


def call_readings(text: str, pos: int) -> Iterator[tuple[Call, int]]:
    """The possible readings of the call at `pos`: one, except for free-text calls."""
    m = NAME.match(text, pos)
    if m and m.group() in TEXT_CALLS:
        paren = _skip(text, m.end(), _INLINE_WS)
        if paren < len(text) and text[paren] == "(":
            key = _CONTENT_KEY.match(text, _skip(text, paren + 1, _ANY_WS))
            if key:
                found = False
                for reading in _text_readings(text, m.group(), key.end()):
                    found = True
                    yield reading
                if not found:
                    raise ParseError(
                        f"in {m.group()}(...): the string value of content is never closed"
                    )
                return
    yield read_call(text, pos)


class _AdjacentCalls(ParseError):
    """Two calls on consecutive lines; `next_at` is where the second one starts."""

    def __init__(self, message: str, next_at: int) -> None:
        super().__init__(message)
        self.next_at = next_at


def _next_call(text: str, call: Call, end: int) -> int | None:
    """Where the call after `call` starts, None at the end; bad separators raise."""
    sep_end = _skip(text, end, _ANY_WS)
    if sep_end >= len(text):
        return None
    newlines = text.count("\n", end, sep_end)
    if newlines == 0:
        raise ParseError(f"unexpected text after {call.name}(...): {snippet(text, sep_end)!r}")
    if newlines == 1:
        raise _AdjacentCalls(
            f"two actions on consecutive lines after {call.name}(...): "
            "put a blank line between actions",
            sep_end,
        )
    return sep_end


def _starts_known_call(text: str, pos: int, known: frozenset[str]) -> bool:
    m = NAME.match(text, pos)
    if not m or m.group() not in known:
        return False
    paren = _skip(text, m.end(), _INLINE_WS)
    return paren < len(text) and text[paren] == "("


def parse_calls(text: str, known: frozenset[str] | tuple[str, ...] = ()) -> list[Call]:
    """All calls of an action text, which must be separated by blank lines.

    A depth-first search over the readings of each call (only free-text calls have more
    than one), remembering positions from which nothing parses. The error reported is the
    first one met, i.e. that of the most natural reading. `known` names the dialect's
    actions: a free-text value followed on the next line by one of them is two actions
    missing their blank line, never one longer text (typing the model's next action).
    """
    known = frozenset(known)
    text = text.strip()
    if not text:
        raise ParseError("the action is empty")
    frames: list[tuple[int, Iterator[tuple[Call, int]]]] = [(0, call_readings(text, 0))]
    calls: list[Call] = []  # calls[k]: the reading frame k currently tries
    dead: set[int] = set()
    first_error: ParseError | None = None
    tried = 0
    while frames and tried < MAX_READINGS:
        start, readings = frames[-1]
        try:
            reading = next(readings, None)
        except ParseError as err:
            first_error = first_error or err
            reading = None
        if reading is None:
            frames.pop()
            dead.add(start)
            continue
        tried += 1
        call, end = reading
        try:
            following = _next_call(text, call, end)
        except _AdjacentCalls as err:
            if _starts_known_call(text, err.next_at, known):
                raise ParseError(str(err)) from None
            first_error = first_error or err
            continue
        except ParseError as err:
            first_error = first_error or err
            continue
        del calls[len(frames) - 1 :]
        calls.append(call)
        if following is None:
            return calls
        if following not in dead:
            frames.append((following, call_readings(text, following)))
    raise first_error or ParseError("the action text has too many possible readings")
