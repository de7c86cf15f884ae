"""agent.resize.smart_resize is qwen_vl_utils.smart_resize without torch: equal on many
thousands of sizes, both factors, and the pixel bounds our dialects use."""

from __future__ import annotations

import random

import pytest

from agent.dialects import qwen3vl, uitars
from agent.resize import PixelBoundsError, smart_resize

qwen_vl_utils = pytest.importorskip("qwen_vl_utils")

BOUNDS = [
    (28, uitars.MIN_PIXELS, uitars.MAX_PIXELS_15),  # uitars-1.5
    (28, uitars.MIN_PIXELS, uitars.MAX_PIXELS_10),  # uitars-1.0
    (32, qwen3vl.MIN_PIXELS, qwen3vl.MAX_PIXELS),  # qwen3-vl
    (28, None, None),  # qwen-vl-utils' defaults
    (32, None, None),
    (28, 4 * 28 * 28, 4 * 28 * 28),  # a degenerate window: min == max
]


def sizes() -> list[tuple[int, int]]:
    rng = random.Random(1234)
    out = [(h, w) for h in range(1, 70, 3) for w in range(1, 70, 5)]  # tiny, near factors
    out += [(rng.randint(1, 9000), rng.randint(1, 9000)) for _ in range(2500)]
    # common screens and their HiDPI doubles, portrait too
    for w, h in [(1920, 1080), (2560, 1440), (1280, 800), (1366, 768), (3840, 2160),
                 (1440, 900), (2880, 1800), (1024, 768), (5120, 2880), (800, 600)]:  # fmt: skip
        out += [(h, w), (w, h), (h + 1, w - 1)]
    # aspect ratios around the 200:1 limit
    out += [(1, 200), (1, 201), (10, 2000), (10, 2001), (3, 700), (5000, 24)]
    return out


def outcome(fn, h, w, factor, lo, hi):
    try:
        return fn(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    except (ValueError, AssertionError):  # qwen-vl-utils: ValueError, or an assert
        return "refused"


@pytest.mark.parametrize(("factor", "lo", "hi"), BOUNDS)
def test_equal_to_qwen_vl_utils(factor, lo, hi):
    checked = 0
    for h, w in sizes():
        ours = outcome(smart_resize, h, w, factor, lo, hi)
        theirs = outcome(qwen_vl_utils.smart_resize, h, w, factor, lo, hi)
        assert ours == theirs, (h, w, factor, lo, hi)
        checked += 1
    assert checked > 2500


def test_known_sizes():
    assert smart_resize(1080, 1920, 28, uitars.MIN_PIXELS, uitars.MAX_PIXELS_15) == (1092, 1932)
    assert smart_resize(1080, 1920, 32, qwen3vl.MIN_PIXELS, qwen3vl.MAX_PIXELS) == (1088, 1920)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 201)
    with pytest.raises(PixelBoundsError, match="max_pixels"):
        smart_resize(100, 100, 28, min_pixels=1000, max_pixels=10)
    with pytest.raises(AssertionError):  # qwen-vl-utils asserts: code catching that works
        smart_resize(100, 100, 28, min_pixels=1000, max_pixels=10)
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 100)


def test_importing_the_agent_resize_path_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from agent.dialects import get_dialect\n"
        "print(get_dialect('uitars-1.5').model_size(1920, 1080))\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'qwen_vl_utils') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["(1932, 1092)", "[]"]
