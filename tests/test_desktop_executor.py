"""Real mouse and keyboard events into the real practice sandbox under Xvfb."""

from __future__ import annotations

import pytest

from agent import actions as A
from agent.desktop.executor import Executor, clamp, needs_clipboard
from agent.frames import Rect
from agent.keys import map_key, map_keys
from tests.sandbox_proc import centre, read_state, sandbox, wait_state

SCREEN = Rect(0, 0, 1280, 800)

# --- pure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "platform", "expected"),
    [
        ("ctrl", "linux", "ctrl"), ("ctrl", "darwin", "command"), ("Control", "win32", "ctrl"),
        ("cmd", "linux", "ctrl"), ("command", "darwin", "command"), ("super", "linux", "win"),
        ("meta", "win32", "win"), ("win", "darwin", "command"), ("alt", "darwin", "option"),
        ("ArrowUp", "linux", "up"), ("return", "linux", "enter"), ("Escape", "linux", "esc"),
        ("PgDn", "linux", "pagedown"), ("page_up", "linux", "pageup"), ("C", "linux", "c"),
        ("F5", "linux", "f5"), ("space", "linux", "space"),
    ],
)
def test_key_names_map_per_os(name, platform, expected):
    assert map_key(name, platform) == expected


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="'hyperdrive'"):
        map_keys(["ctrl", "hyperdrive"], "linux", known={"ctrl"})


def test_clamp_keeps_points_on_the_monitor():
    monitor = Rect(-1920, -200, 1920, 1080)
    assert clamp(monitor, -5000, 5000) == (-1920, 879)
    assert clamp(monitor, 10, -300) == (-1, -200)


@pytest.mark.parametrize(("text", "paste"), [("hello, world!", False), ("héllo", True),
                                              ("two\nlines", True), ("tab\there", True)])
def test_only_printable_ascii_is_typed_key_by_key(text, paste):
    assert needs_clipboard(text) == paste


# --- under Xvfb, against the sandbox ---------------------------------------------------


@pytest.fixture
def sbx(xvfb_display, tmp_path):
    state_file = tmp_path / "state.json"
    with sandbox(state_file) as state:
        yield state_file, state


def at(state, widget, cls=A.Click, **kw):
    point = A.Point(*centre(state, widget))
    return cls(point=point, screen=point, **kw)


def run(executor, action, monitor=SCREEN):
    result = executor.execute(action, monitor)
    assert result.ok, result.error
    return result


@pytest.mark.display
def test_clicks_of_every_kind_and_hover(sbx):
    state_file, state = sbx
    ex = Executor()
    run(ex, at(state, "click_button"))
    run(ex, at(state, "double_button", A.DoubleClick))
    run(ex, at(state, "right_button", A.RightClick))
    run(ex, at(state, "right_button", A.MiddleClick))
    run(ex, at(state, "hover_label", A.Hover))
    final = wait_state(state_file, lambda s: s["hovering"] and s["middle_clicks"] == 1)
    assert (final["clicks"], final["double_clicks"], final["right_clicks"]) == (1, 1, 1)
    run(ex, at(state, "checkbox"))
    assert wait_state(state_file, lambda s: s["checked"])["hover_count"] == 1


@pytest.mark.display
def test_text_arrives_intact_and_the_clipboard_is_restored(sbx):
    from agent.desktop.clipboard import Clipboard

    state_file, state = sbx
    clipboard = Clipboard()
    clipboard.set_text("the person's own clipboard")
    ex = Executor(clipboard=clipboard)
    run(ex, at(state, "line_edit"))
    assert run(ex, A.Type("héllo 世界 🙂")).details["method"] == "clipboard"
    run(ex, A.Type(" and ascii!"))
    run(ex, at(state, "text_edit"))
    run(ex, A.Type("first line\nsecond line", enter=True))
    run(ex, A.Type("third"))
    final = wait_state(state_file, lambda s: s["text_edit"].endswith("third"))
    assert final["line_edit"] == "héllo 世界 🙂 and ascii!"
    assert final["text_edit"] == "first line\nsecond line\nthird"
    assert clipboard.get_text() == "the person's own clipboard"


@pytest.mark.display
def test_vertical_and_horizontal_scroll(sbx):
    state_file, state = sbx
    ex = Executor()
    # One notch first, to learn how far a notch scrolls; then every later check waits for
    # an exact value, so notches still arriving on a loaded machine cannot be misread.
    run(ex, at(state, "list", A.Scroll, direction="down", amount=1))
    notch = wait_state(state_file, lambda s: s["list_scroll"] > 0)["list_scroll"]
    run(ex, at(state, "list", A.Scroll, direction="down", amount=4))
    wait_state(state_file, lambda s: s["list_scroll"] == 5 * notch)
    run(ex, at(state, "list", A.Scroll, direction="up", amount=2))
    wait_state(state_file, lambda s: s["list_scroll"] == 3 * notch)
    run(ex, at(state, "hscroll", A.Scroll, direction="right", amount=1))
    step = wait_state(state_file, lambda s: s["hscroll"] > 0)["hscroll"]
    run(ex, at(state, "hscroll", A.Scroll, direction="right", amount=3))
    wait_state(state_file, lambda s: s["hscroll"] == 4 * step)
    run(ex, at(state, "hscroll", A.Scroll, direction="left", amount=1))
    final = wait_state(state_file, lambda s: s["hscroll"] == 3 * step)
    assert final["list_scroll"] == 3 * notch  # sideways scrolling left the list alone


@pytest.mark.display
def test_drag_moves_the_slider(sbx):
    state_file, state = sbx
    handle, slider = state["widgets"]["slider_handle"], state["widgets"]["slider"]
    start = A.Point(*centre(state, "slider_handle"))
    end = A.Point(slider["x"] + slider["width"] * 0.75, start.y)
    run(Executor(), A.Drag(start, end, screen_start=start, screen_end=end))
    # The drag's motion events move the slider in steps: wait for where it ends, not for
    # the first step (a loaded machine may still be delivering the rest).
    value = wait_state(state_file, lambda s: 65 <= s["slider"] <= 85)["slider"]
    assert 65 <= value <= 85, (value, handle)


@pytest.mark.display
def test_hotkey_press_and_release(sbx):
    state_file, state = sbx
    ex = Executor()
    run(ex, at(state, "click_button"))  # focus the window
    run(ex, A.Hotkey(("Ctrl", "Shift", "H")))
    wait_state(state_file, lambda s: s["menu_action_count"] == 1)
    run(ex, A.Press(("shift",)))
    run(ex, at(state, "click_button"))
    run(ex, A.Release(("shift",)))
    run(ex, at(state, "click_button"))
    final = wait_state(state_file, lambda s: s["clicks"] == 3)
    assert final["click_modifiers"] == [[], ["shift"], []]


@pytest.mark.display
def test_coordinates_are_clamped_to_the_monitor_again(sbx):
    """A hand-made action far off the monitor still lands on it (on its nearest edge)."""
    state_file, state = sbx
    r = state["widgets"]["click_button"]
    button = Rect(r["x"] + 2, r["y"] + 2, r["width"] - 4, r["height"] - 4)
    result = run(Executor(), A.Click(A.Point(0, 0), screen=A.Point(-3000, 9000)), button)
    assert result.details["input"] == [button.left, button.bottom - 1]
    assert wait_state(state_file, lambda s: s["clicks"] == 1)


@pytest.mark.display
def test_scale_override_turns_logical_points_into_x_pixels(sbx, monkeypatch):
    monkeypatch.setenv("DESKPILOT_SCALE", "2")
    state_file, state = sbx
    x, y = centre(state, "click_button")
    logical = A.Point(x / 2, y / 2)
    result = run(Executor(), A.Click(logical, screen=logical), Rect(0, 0, 640, 400))
    assert result.details["input"] == [round(logical.x) * 2, round(logical.y) * 2]
    assert wait_state(state_file, lambda s: s["clicks"] == 1)


@pytest.mark.display
def test_bad_actions_fail_with_a_reason(sbx):
    ex = Executor()
    bad_key = ex.execute(A.Hotkey(("ctrl", "hyperdrive")), SCREEN)
    assert not bad_key.ok and "hyperdrive" in bad_key.error
    no_screen = ex.execute(A.Click(A.Point(1, 1)), SCREEN)
    assert not no_screen.ok and "no screen coordinates" in no_screen.error
    mobile = ex.execute(A.PressHome(), SCREEN)
    assert not mobile.ok and "phone action" in mobile.error
    assert not ex.execute(A.Wait(seconds=-1), SCREEN).ok


@pytest.mark.display
def test_paste_with_no_text_field_focused_fails_and_restores_the_clipboard(sbx):
    from agent.desktop.clipboard import Clipboard

    state_file, state = sbx
    clipboard = Clipboard()
    clipboard.set_text("keep me")
    ex = Executor(clipboard=clipboard, paste_timeout=0.5)
    run(ex, at(state, "checkbox"))  # focus on a checkbox: nothing asks for the text
    result = ex.execute(A.Type("naïve"), SCREEN)
    assert not result.ok and "nothing took the pasted text" in result.error
    assert clipboard.get_text() == "keep me"
    assert read_state(state_file)["line_edit"] == ""


def test_interrupt_cuts_a_wait_short():
    import threading
    import time

    ex = Executor()
    threading.Timer(0.1, ex.cancel.set).start()
    started = time.monotonic()
    result = ex.execute(A.Wait(seconds=5), SCREEN)
    assert result.ok and result.details["interrupted"] is True
    assert time.monotonic() - started < 2


@pytest.mark.display
def test_desktop_env_observes_acts_and_waits_for_the_screen_to_settle(sbx):
    import contextlib

    from agent.desktop import DesktopEnv
    from agent.frames import to_screen

    state_file, state = sbx
    hides = []

    @contextlib.contextmanager
    def hide():
        hides.append(1)
        yield

    before = []
    # A generous cap: settling returns as soon as the screen is still, and a loaded
    # machine can take seconds to repaint the sandbox.
    env = DesktopEnv(settle_timeout=30.0, hide_windows=hide, before_action=before.append)
    obs = env.observe()
    frame = obs.frame.with_model(obs.image.size, "absolute")  # model space == image pixels
    action = to_screen(frame, A.Click(A.Point(*centre(state, "checkbox"))))
    result = env.execute(action)
    assert result.ok and result.details["settled"] is True
    assert 0 < result.details["settle_s"] < 30.0
    assert len(hides) == 2  # once for the observation, once around the whole settle wait
    assert before == [action]  # the app's chance to move its windows out of the way
    assert wait_state(state_file, lambda s: s["checked"])
    after = env.observe().image
    assert after.tobytes() != obs.image.tobytes()  # the tick and status line are on screen
    env.close()
