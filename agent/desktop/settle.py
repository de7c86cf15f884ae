"""Wait for the screen to stop changing after an action, instead of a fixed sleep.

Frames are compared as small grayscale thumbnails (cheap, and blind to sub-pixel
noise): the screen counts as settled when two consecutive frames differ in less than
`threshold` of their pixels. A spinner or a video never settles, so `timeout` bounds
the wait; the caller learns whether it settled and how long it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

THUMB_WIDTH = 160  # pixels; enough to see a menu open or text appear
PIXEL_DELTA = 12  # gray levels a thumbnail pixel must move to count as changed


@dataclass(frozen=True)
class SettleResult:
    settled: bool
    elapsed: float  # seconds
    frames: int
    changed: float  # fraction of changed pixels between the last two frames


def thumbnail(image: Image):
    """Downscaled grayscale copy as a uint8 numpy array (height, width)."""
    import numpy as np

    width = min(THUMB_WIDTH, image.width)
    height = max(1, round(image.height * width / image.width))
    return np.asarray(image.convert("L").resize((width, height)), dtype=np.int16)


def changed_fraction(a, b) -> float:
    """Fraction of thumbnail pixels that moved by more than PIXEL_DELTA gray levels."""
    if a.shape != b.shape:
        return 1.0
    return float((abs(a - b) > PIXEL_DELTA).mean())


def wait_for_settle(
    grab: Callable[[], Image],
    *,
    timeout: float = 3.0,
    threshold: float = 0.005,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] | None = None,
) -> SettleResult:
    """Grab frames every `interval` s until two in a row differ by < `threshold`, or
    until `stop()` says the person pressed Stop (not settled, then)."""
    if timeout < 0 or not 0 <= threshold <= 1:
        raise ValueError(f"settle needs timeout >= 0 and 0 <= threshold <= 1, got "
                         f"timeout={timeout}, threshold={threshold}")
    start = clock()
    previous = thumbnail(grab())
    frames, changed = 1, 1.0
    while True:
        elapsed = clock() - start
        if elapsed >= timeout or (stop is not None and stop()):
            return SettleResult(False, elapsed, frames, changed)
        sleep(min(interval, max(0.0, timeout - elapsed)))
        current = thumbnail(grab())
        frames += 1
        changed = changed_fraction(previous, current)
        if changed < threshold:
            return SettleResult(True, clock() - start, frames, changed)
        previous = current
