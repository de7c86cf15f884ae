"""`deskpilot parse`: run a model reply through the real parser and print the actions.

A debugging tool for the question "what would the agent have done with this reply?":

    echo "Thought: ...
    Action: click(start_box='(966,546)')" | \\
        deskpilot parse --dialect uitars-1.5 --image-size 1932x1092 --screen-size 1920x1080

prints {"thought": ..., "actions": [{"type": "click", "x": 960, "y": 540}]}. Coordinates
go through agent.frames exactly as in a run (a Frame of a monitor at (0, 0) of the screen
size, captured at that size, shown to the model at the image size), so X = x*W/w for
uitars-1.5 and X = x*W/1000 for uitars-1.0 and qwen3-vl, rounded and kept on the screen.

--jsonl reads one JSON object per line, {"response", "dialect", "image_size",
"screen_size"} (missing fields fall back to the flags), and prints one line per input:
the result, or {"error": ...} and goes on with the next line. A malformed reply in single
mode prints {"error": ...} and exits with status 1. An --image-size that is not a multiple
of the dialect's factor (28 or 32) gets a warning on stderr: the model never sees such an
image, so it is most likely the screen size given by mistake.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent import actions as A
from agent.dialects import DIALECT_NAMES, get_dialect
from agent.frames import Frame, Rect, to_screen


class InputError(ValueError):
    """Input that is not a reply problem: missing sizes, unknown dialect, bad JSON line."""


def parse_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080)."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"size must look like 1920x1080, got {text!r}")
    width, height = (int(p) for p in parts)
    if width <= 0 or height <= 0:
        raise InputError(f"size must be positive, got {text!r}")
    return width, height


def _size_arg(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _size_field(value: Any, field: str) -> tuple[int, int] | None:
    """A [w, h] (or "WxH") field of a JSONL line."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_size(value)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise InputError(f"{field} must be [width, height] in whole pixels, got {value!r}")
    return value[0], value[1]


def action_json(action: A.Action) -> dict[str, Any]:
    """The output form of one action whose screen coordinates are filled in."""
    out: dict[str, Any] = {"type": action.name}
    if isinstance(action, A.PointerAction):
        out["x"], out["y"] = action.screen.rounded()
    elif isinstance(action, A.Drag):
        out["x"], out["y"] = action.screen_start.rounded()
        out["x2"], out["y2"] = action.screen_end.rounded()
    elif isinstance(action, A.Scroll):
        out["direction"] = action.direction
        if action.screen is not None:
            out["x"], out["y"] = action.screen.rounded()
    elif isinstance(action, A.Hotkey | A.Press | A.Release):
        out["keys"] = list(action.keys)
    elif isinstance(action, A.Type):
        out["text"] = action.text
        out["enter"] = action.enter
    elif isinstance(action, A.Finished | A.CallUser):
        out["content"] = action.content
    elif isinstance(action, A.OpenApp):
        out["app_name"] = action.app_name
    elif isinstance(action, A.Wait):
        out["seconds"] = action.seconds
    return out


def parse_one(
    response: str,
    dialect_name: str,
    image_size: tuple[int, int] | None,
    screen_size: tuple[int, int] | None,
) -> dict[str, Any]:
    """Parse one reply and map its actions to screen pixels. Raises ParseError/InputError."""
    if not isinstance(response, str):
        raise InputError(f"response must be a string, got {type(response).__name__}")
    if dialect_name not in DIALECT_NAMES:
        raise InputError(f"unknown dialect {dialect_name!r}; choose one of {DIALECT_NAMES}")
    dialect = get_dialect(dialect_name)
    if dialect.space == "absolute" and image_size is None:
        raise InputError(
            f"{dialect_name} coordinates are pixels of the resized image: give its size "
            "(--image-size WxH)"
        )
    if screen_size is None:
        if dialect.space != "absolute":
            raise InputError(f"{dialect_name} needs the screen size (--screen-size WxH)")
        screen_size = image_size
    parsed = dialect.parse(response, image_size or screen_size)
    frame = Frame(
        monitor=Rect(0, 0, *screen_size),
        image_size=screen_size,
        model_size=image_size,
        space=dialect.space,
    )
    return {
        "thought": parsed.thought,
        "actions": [action_json(to_screen(frame, action)) for action in parsed.actions],
    }


def image_size_warning(dialect_name: str, image_size: tuple[int, int] | None) -> str | None:
    """Why `image_size` cannot be what a model saw: every image the dialect shows the
    model has both sides a multiple of its factor. None when the size is possible."""
    if image_size is None or dialect_name not in DIALECT_NAMES:
        return None
    dialect = get_dialect(dialect_name)
    factor = dialect.image_factor
    width, height = image_size
    if width % factor == 0 and height % factor == 0:
        return None
    hint = ""
    try:
        resized = dialect.model_size(width, height)
        hint = (
            f"; a {width}x{height} screenshot is shown to the model as "
            f"{resized[0]}x{resized[1]} (pass that, and --screen-size {width}x{height})"
        )
    except ValueError:
        pass
    return (
        f"--image-size {width}x{height} is not a multiple of {factor} on both sides, so "
        f"{dialect_name} never shows the model such an image{hint}"
    )


def _warn_image_size(dialect_name: str, image_size: tuple[int, int] | None, seen: set) -> None:
    key = (dialect_name, image_size)
    if key in seen:
        return
    seen.add(key)
    warning = image_size_warning(dialect_name, image_size)
    if warning:
        print(f"deskpilot parse: warning: {warning}", file=sys.stderr, flush=True)  # noqa: T201


def _jsonl(stream, args: argparse.Namespace) -> int:
    warned: set = set()
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            try:
                item = json.loads(line)
            except ValueError as err:
                raise InputError(f"line {number} is not JSON: {err}") from None
            if not isinstance(item, dict) or "response" not in item:
                raise InputError(f"line {number} must be an object with a 'response'")
            dialect_name = item.get("dialect", args.dialect)
            image_size = _size_field(item.get("image_size"), "image_size") or args.image_size
            if isinstance(dialect_name, str):
                _warn_image_size(dialect_name, image_size, warned)
            result = parse_one(
                item["response"],
                dialect_name,
                image_size,
                _size_field(item.get("screen_size"), "screen_size") or args.screen_size,
            )
        except ValueError as err:  # ParseError and InputError
            result = {"error": str(err)}
        print(json.dumps(result, ensure_ascii=False), flush=True)  # noqa: T201
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskpilot parse",
        description="Parse a model reply (read from stdin) into actions, printed as JSON.",
    )
    parser.add_argument(
        "--dialect", default="uitars-1.5", choices=DIALECT_NAMES, help="default: uitars-1.5"
    )
    parser.add_argument(
        "--image-size",
        type=_size_arg,
        metavar="WxH",
        help="size of the resized image the model saw (needed for uitars-1.5)",
    )
    parser.add_argument(
        "--screen-size",
        type=_size_arg,
        metavar="WxH",
        help="logical size of the screen the actions run on (default: the image size)",
    )
    parser.add_argument(
        "--jsonl",
        action="store_true",
        help='read lines {"response", "dialect", "image_size", "screen_size"}; one result each',
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdin, "reconfigure"):  # undecodable bytes become U+FFFD, not a crash
        sys.stdin.reconfigure(errors="replace")
    if args.jsonl:
        return _jsonl(sys.stdin, args)
    _warn_image_size(args.dialect, args.image_size, set())
    try:
        result = parse_one(sys.stdin.read(), args.dialect, args.image_size, args.screen_size)
    except A.ParseError as err:
        print(json.dumps({"error": str(err)}, ensure_ascii=False))  # noqa: T201
        return 1
    except InputError as err:
        print(json.dumps({"error": str(err)}, ensure_ascii=False))  # noqa: T201
        return 2
    print(json.dumps(result, ensure_ascii=False))  # noqa: T201
    return 0
