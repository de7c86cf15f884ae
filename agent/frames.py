"""Coordinate frames: the one module that converts between the four spaces.

    model space      resized image pixels (UI-TARS-1.5) or 0..1000 (UI-TARS-1.0, Qwen3-VL)
        <-> image    the captured screenshot, physical pixels, origin at the monitor
        <-> monitor  logical pixels, origin at the monitor's top-left
        <-> desktop  logical pixels on the virtual desktop (what pyautogui takes);
                     monitors left of / above the primary have negative origins

Every conversion is a pure function of a `Frame`, which is stored with each step so a
recorded click can always be re-derived. The scale of a monitor is image pixels per
logical pixel (2.0 on a Retina display, 1.25/1.5 on Windows at 125%/150%), and may
differ between x and y after rounding, so it is kept per axis.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from agent import actions as A
from agent.resize import smart_resize

CoordinateSpace = Literal["absolute", "relative1000"]
RELATIVE_RANGE = 1000.0


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle: top-left corner and size."""

    left: int
    top: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"rect must have a positive size, got {self.width}x{self.height}")

    @property
    def right(self) -> int:
        """Exclusive right edge."""
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def contains(self, x: float, y: float) -> bool:
        return self.left <= x < self.right and self.top <= y < self.bottom

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Frame:
    """Where one observation's screenshot sits, and how the model saw it.

    monitor:     the captured monitor on the virtual desktop, logical pixels.
    image_size:  the screenshot's (width, height) in physical pixels.
    model_size:  the (width, height) of the image the model was shown (after smart_resize).
    space:       how the model's coordinates are expressed.
    """

    monitor: Rect
    image_size: tuple[int, int]
    model_size: tuple[int, int] | None = None
    space: CoordinateSpace = "absolute"

    @property
    def scale(self) -> tuple[float, float]:
        """Physical pixels per logical pixel, per axis."""
        return self.image_size[0] / self.monitor.width, self.image_size[1] / self.monitor.height

    def with_model(self, model_size: tuple[int, int], space: CoordinateSpace) -> Frame:
        return dataclasses.replace(self, model_size=tuple(model_size), space=space)

    def to_dict(self) -> dict:
        return {
            "monitor": self.monitor.to_dict(),
            "image_size": list(self.image_size),
            "model_size": list(self.model_size) if self.model_size else None,
            "space": self.space,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Frame:
        model_size = data.get("model_size")
        return cls(
            monitor=Rect(**data["monitor"]),
            image_size=tuple(data["image_size"]),
            model_size=tuple(model_size) if model_size else None,
            space=data.get("space", "absolute"),
        )


def model_image_size(
    width: int, height: int, *, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """(width, height) of the image the model sees, resized as the model was trained.

    agent.resize.smart_resize is qwen-vl-utils' function without its torch import, so a
    scripted or remote run never loads torch.
    """
    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return w, h


# --- model space <-> image pixels -------------------------------------------------------


def _model_extent(frame: Frame) -> tuple[float, float]:
    if frame.space == "relative1000":
        return RELATIVE_RANGE, RELATIVE_RANGE
    if frame.model_size is None:
        raise ValueError("frame has no model_size: absolute model coordinates need one")
    return float(frame.model_size[0]), float(frame.model_size[1])


def model_to_image(frame: Frame, x: float, y: float) -> tuple[float, float]:
    mw, mh = _model_extent(frame)
    return x * frame.image_size[0] / mw, y * frame.image_size[1] / mh


def image_to_model(frame: Frame, x: float, y: float) -> tuple[float, float]:
    mw, mh = _model_extent(frame)
    return x * mw / frame.image_size[0], y * mh / frame.image_size[1]


# --- image pixels <-> monitor logical ---------------------------------------------------


def image_to_monitor(frame: Frame, x: float, y: float) -> tuple[float, float]:
    sx, sy = frame.scale
    return x / sx, y / sy


def monitor_to_image(frame: Frame, x: float, y: float) -> tuple[float, float]:
    sx, sy = frame.scale
    return x * sx, y * sy


# --- monitor logical <-> virtual desktop ------------------------------------------------


def monitor_to_desktop(frame: Frame, x: float, y: float) -> tuple[float, float]:
    return x + frame.monitor.left, y + frame.monitor.top


def desktop_to_monitor(frame: Frame, x: float, y: float) -> tuple[float, float]:
    return x - frame.monitor.left, y - frame.monitor.top


# --- composed ---------------------------------------------------------------------------


def model_to_desktop(frame: Frame, x: float, y: float) -> tuple[float, float]:
    return monitor_to_desktop(frame, *image_to_monitor(frame, *model_to_image(frame, x, y)))


def desktop_to_model(frame: Frame, x: float, y: float) -> tuple[float, float]:
    return image_to_model(frame, *monitor_to_image(frame, *desktop_to_monitor(frame, x, y)))


def clamp_to_monitor(frame: Frame, x: float, y: float) -> tuple[int, int]:
    """Round to whole desktop pixels and keep the point on the captured monitor.

    The last row/column is the bound because `right`/`bottom` are exclusive.
    """
    m = frame.monitor
    cx = min(max(round(x), m.left), m.right - 1)
    cy = min(max(round(y), m.top), m.bottom - 1)
    return cx, cy


def point_to_screen(frame: Frame, point: A.Point) -> A.Point:
    """A model-space point -> a clamped desktop-logical point, ready to click."""
    x, y = clamp_to_monitor(frame, *model_to_desktop(frame, point.x, point.y))
    return A.Point(x, y)


def to_screen(frame: Frame, action: A.Action) -> A.Action:
    """Fill in the screen coordinates of an action parsed in model space."""
    if isinstance(action, A.PointerAction):
        return dataclasses.replace(action, screen=point_to_screen(frame, action.point))
    if isinstance(action, A.Drag):
        return dataclasses.replace(
            action,
            screen_start=point_to_screen(frame, action.start),
            screen_end=point_to_screen(frame, action.end),
        )
    if isinstance(action, A.Scroll) and action.point is not None:
        return dataclasses.replace(action, screen=point_to_screen(frame, action.point))
    return action
