"""The image size a Qwen-VL model sees: our own `smart_resize`, pure Python.

Why not `qwen_vl_utils.smart_resize`: importing qwen_vl_utils imports torch and
torchvision (about 6 s, and a dependency a scripted or remote run does not otherwise
need). This is the same function with the same contract (tests/test_resize.py checks it
equal to qwen-vl-utils on many thousands of sizes with factors 28 and 32 and the pixel
bounds of our dialects):

1. each side is rounded to the nearest multiple of `factor` (at least `factor`);
2. if that has more than `max_pixels`, both sides are scaled down by the same ratio and
   floored to multiples of `factor`; if fewer than `min_pixels`, scaled up and ceiled;
3. an aspect ratio above MAX_RATIO raises ValueError, as does max_pixels < min_pixels.

Rounding is Python's round() (ties to even), exactly as qwen-vl-utils does, so sizes such
as 1932x1092 for a 1920x1080 screen (factor 28) come out identical.
"""

from __future__ import annotations

import math

MAX_RATIO = 200
# qwen-vl-utils' defaults, in tokens of factor x factor pixels
IMAGE_MIN_TOKENS = 4
IMAGE_MAX_TOKENS = 16384


class PixelBoundsError(ValueError, AssertionError):
    """max_pixels < min_pixels. qwen-vl-utils asserts this (AssertionError); deriving from
    both keeps code written against either contract working."""


def round_by_factor(number: float, factor: int) -> int:
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> tuple[int, int]:
    """(height, width) of the resized image; argument order as in qwen-vl-utils."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    max_pixels = max_pixels if max_pixels is not None else IMAGE_MAX_TOKENS * factor**2
    min_pixels = min_pixels if min_pixels is not None else IMAGE_MIN_TOKENS * factor**2
    if max_pixels < min_pixels:
        raise PixelBoundsError(
            "The max_pixels of image must be greater than or equal to min_pixels."
        )
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_RATIO:
        raise ValueError(f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {ratio}")
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = floor_by_factor(height / beta, factor)
        w_bar = floor_by_factor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by_factor(height * beta, factor)
        w_bar = ceil_by_factor(width * beta, factor)
    return h_bar, w_bar
