"""The UI-TARS dialects: uitars-1.5 (absolute pixels) and uitars-1.0 (0..1000).

Both speak "Thought: ...\\nAction: call(...)" (parsed by uitars_parser) and lay the chat
out as the official UI-TARS code does: a plain system message, the computer-use prompt
with the user's instruction as the first user message, then screenshots and replies.
uitars-1.5 uses the official COMPUTER_USE prompt verbatim (see prompts.py).

UI-TARS-1.5 writes points as <|box_start|>(x,y)<|box_end|>; those are special tokens, so
a decoder that skips special tokens hands us '(x,y)'. Earlier replies are shown back to
the model with the tokens restored (as the official deployment example does), so the
history looks like what the model generated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent import actions as A
from agent.dialects import history as H
from agent.dialects.callsyntax import encode_string
from agent.dialects.prompts import UITARS_10_TEMPLATE, fill_uitars_prompt, uitars_15_template
from agent.dialects.uitars_parser import CoordinateCheck, parse_reply
from agent.frames import CoordinateSpace, model_image_size
from agent.protocols import HistoryTurn

if TYPE_CHECKING:
    from PIL.Image import Image

FACTOR = 28  # Qwen2-VL / Qwen2.5-VL: 14-pixel patches merged 2x2
MIN_PIXELS = 100 * FACTOR * FACTOR  # UI-TARS' own lower bound (Qwen's default is 4*28*28)
MAX_PIXELS_15 = 16384 * FACTOR * FACTOR
MAX_PIXELS_10 = 2700 * FACTOR * FACTOR
SYSTEM_TEXT = "You are a helpful assistant."

_BARE_POINT = re.compile(
    r"(?<![A-Za-z0-9_])(?P<key>(?:start_|end_)?(?:box|point))="
    r"(?P<q>['\"])(?P<pt>\([^()'\"<>]*\))(?P=q)"
)


def with_box_tokens(reply: str) -> str:
    """start_box='(x,y)' -> start_box='<|box_start|>(x,y)<|box_end|>' (idempotent)."""
    return _BARE_POINT.sub(
        lambda m: f"{m['key']}={m['q']}<|box_start|>{m['pt']}<|box_end|>{m['q']}", reply
    )


def _number(value: float) -> str:
    """A coordinate as the parser reads it: 12, 12.5 (never 1e-05, which it rejects)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = repr(value) if isinstance(value, float) else str(value)
    if "e" in text.lower():  # tiny magnitudes: fixed-point, a millionth of a pixel at most
        text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text


class UITarsDialect:
    """uitars-1.5 / uitars-1.0. Satisfies agent.protocols.Dialect."""

    image_factor = FACTOR
    min_pixels = MIN_PIXELS

    def __init__(
        self,
        name: str,
        *,
        space: CoordinateSpace,
        prompt_template: str,
        default_max_pixels: int,
        history_n: int = 5,
        max_pixels: int | None = None,
        language: str = "English",
    ) -> None:
        if history_n < 1:
            raise ValueError(f"history_n must be at least 1 (the new screenshot), got {history_n}")
        self.name = name
        self.space: CoordinateSpace = space
        self.prompt_template = prompt_template  # with {language} and {instruction}
        self.history_n = history_n
        self.max_pixels = int(max_pixels or default_max_pixels)
        if self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels must be at least {self.min_pixels}")
        self.language = language

    def __repr__(self) -> str:
        return f"<{self.name} dialect history_n={self.history_n} max_pixels={self.max_pixels}>"

    # --- images -------------------------------------------------------------------------

    def model_size(self, width: int, height: int) -> tuple[int, int]:
        return model_image_size(
            width, height, factor=FACTOR, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )

    # --- prompt -------------------------------------------------------------------------

    def system_prompt(self, task: str) -> str:
        return fill_uitars_prompt(self.prompt_template, task, self.language)

    def build_messages(self, task: str, history: Sequence[HistoryTurn], image: Image) -> list[dict]:
        for picture in [turn.image for turn in history] + [image]:
            H.check_resized(picture, FACTOR, self.min_pixels, self.max_pixels, self.name)
        return [
            H.message("system", H.text_part(SYSTEM_TEXT)),
            H.message("user", H.text_part(self.system_prompt(task))),
            *H.step_messages(history, image, self.history_n, with_box_tokens),
        ]

    # --- replies ------------------------------------------------------------------------

    def _coordinates(self, model_size: tuple[int, int]) -> CoordinateCheck:
        if self.space == "relative1000":
            return CoordinateCheck((1000, 1000), "coordinates are relative, 0..1000")
        width, height = model_size
        return CoordinateCheck((width, height), f"pixels of the {width}x{height} screenshot")

    def parse(self, text: str, model_size: tuple[int, int]) -> A.Response:
        hint = (
            ". Reply as 'Thought: ...' then 'Action: ...' with one action from the action "
            "space; separate several actions with a blank line."
        )
        return parse_reply(text, self._coordinates(model_size), hint=hint)

    def _box(self, point: A.Point) -> str:
        xy = f"({_number(point.x)},{_number(point.y)})"
        return f"'<|box_start|>{xy}<|box_end|>'" if self.space == "absolute" else f"'{xy}'"

    def format_action(self, action: A.Action) -> str:
        """One action in UI-TARS call syntax (model-space coordinates)."""
        pointer_names = {
            A.Click: "click",
            A.DoubleClick: "left_double",
            A.RightClick: "right_single",
            A.Hover: "hover",
            A.LongPress: "long_press",
        }
        kind = type(action)
        if kind in pointer_names:
            return f"{pointer_names[kind]}(start_box={self._box(action.point)})"
        if isinstance(action, A.Drag):
            return f"drag(start_box={self._box(action.start)}, end_box={self._box(action.end)})"
        if isinstance(action, A.Scroll):
            box = f"start_box={self._box(action.point)}, " if action.point else ""
            return f"scroll({box}direction='{action.direction}')"
        if isinstance(action, A.Hotkey | A.Press | A.Release):
            return f"{action.name}(key={encode_string(' '.join(action.keys))})"
        if isinstance(action, A.Type):
            return f"type(content={encode_string(action.text + chr(10) * action.enter)})"
        if isinstance(action, A.Wait):
            return "wait()"
        if isinstance(action, A.Finished):
            return f"finished(content={encode_string(action.content)})"
        if isinstance(action, A.CallUser):
            if not action.content:
                return "call_user()"
            return f"call_user(content={encode_string(action.content)})"
        if isinstance(action, A.OpenApp):
            return f"open_app(app_name={encode_string(action.app_name)})"
        if isinstance(action, A.PressHome | A.PressBack):
            return f"{action.name}()"
        raise ValueError(f"{self.name} has no action for {action.name!r}")

    def format_reply(self, thought: str, actions: Sequence[A.Action]) -> str:
        if not actions:
            raise ValueError("a reply needs at least one action")
        calls = "\n\n".join(self.format_action(action) for action in actions)
        return f"Thought: {thought}\nAction: {calls}"


def uitars_15(**options) -> UITarsDialect:
    return UITarsDialect(
        "uitars-1.5",
        space="absolute",
        prompt_template=uitars_15_template(),
        default_max_pixels=MAX_PIXELS_15,
        **options,
    )


def uitars_10(**options) -> UITarsDialect:
    return UITarsDialect(
        "uitars-1.0",
        space="relative1000",
        prompt_template=UITARS_10_TEMPLATE,
        default_max_pixels=MAX_PIXELS_10,
        **options,
    )
