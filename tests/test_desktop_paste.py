"""Pasting (non-ASCII and multi-line text) into the real sandbox, back to back, the way a
reply with two type() actions does it; the flake of issue 14 was the second paste."""

from __future__ import annotations

import pytest

from agent import actions as A
from agent.desktop.executor import Executor
from agent.frames import Rect
from tests.sandbox_proc import centre, sandbox, wait_state

SCREEN = Rect(0, 0, 1280, 800)


def click(state, widget):
    point = A.Point(*centre(state, widget))
    return A.Click(point=point, screen=point)


@pytest.mark.display
def test_back_to_back_pastes_from_an_empty_clipboard_leave_it_empty(xvfb_display, tmp_path):
    from agent.desktop.clipboard import Clipboard

    state_file = tmp_path / "state.json"
    with sandbox(state_file) as state:
        clipboard = Clipboard()
        assert clipboard.get_text() is None  # a fresh X server: nobody owns the clipboard
        ex = Executor(clipboard=clipboard)
        for action in [click(state, "line_edit"), A.Type("héllo 世界"),
                       click(state, "text_edit"), A.Type("first\nsecond"),
                       A.Type("\nthird ✓")]:  # fmt: skip
            result = ex.execute(action, SCREEN)
            assert result.ok, result.error
        final = wait_state(state_file, lambda s: s["text_edit"].endswith("third ✓"))
        assert final["line_edit"] == "héllo 世界"
        assert final["text_edit"] == "first\nsecond\nthird ✓"
        assert clipboard.get_text() is None  # our text did not stay behind
