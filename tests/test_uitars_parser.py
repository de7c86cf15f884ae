"""The UI-TARS parser contract of issue #2, case by case (uitars-1.5 and uitars-1.0)."""

from __future__ import annotations

import pytest

from agent import actions as A
from agent.actions import ParseError
from agent.dialects import get_dialect

SIZE = (1932, 1092)  # a 1920x1080 screen after smart_resize with factor 28
V15 = get_dialect("uitars-1.5")
V10 = get_dialect("uitars-1.0")


def parse(text: str, dialect=V15) -> A.Response:
    return dialect.parse(text, SIZE)


def one(text: str, dialect=V15) -> A.Action:
    response = parse(text, dialect)
    assert len(response.actions) == 1, response.actions
    return response.actions[0]


def rejects(text: str, match: str | None = None, dialect=V15) -> ParseError:
    with pytest.raises(ParseError, match=match) as info:
        parse(text, dialect)
    return info.value


# --- where the action is --------------------------------------------------------------


def test_thought_and_action():
    r = parse("Thought: The OK button is visible.\nAction: click(start_box='(10,20)')")
    assert r.thought == "The OK button is visible."
    assert r.actions == (A.Click(point=A.Point(10, 20)),)
    assert r.raw.startswith("Thought:")


def test_last_action_marker_wins():
    text = (
        "Thought: Earlier I wrote Action: click(start_box='(1,1)') but that was wrong.\n"
        "Action: click(start_box='(5,6)')"
    )
    assert parse(text).actions == (A.Click(point=A.Point(5, 6)),)


def test_full_width_colon():
    assert one("Thought: x\nAction：click(start_box='(5,6)')") == A.Click(point=A.Point(5, 6))


def test_action_summary_is_not_a_marker_and_not_executed():
    text = (
        "Reflection: I should click(start_box='(1,1)')\n"
        "Action_Summary: click(start_box='(2,2)')\n"
        "Action: wait()"
    )
    r = parse(text)
    assert r.actions == (A.Wait(),)
    assert r.thought == "click(start_box='(2,2)')"
    assert r.reflection == "I should click(start_box='(1,1)')"


def test_thought_text_is_never_executed():
    r = parse("Thought: click(start_box='(1,1)')\nAction: hover(start_box='(3,4)')")
    assert r.actions == (A.Hover(point=A.Point(3, 4)),)
    assert r.thought == "click(start_box='(1,1)')"


def test_action_marker_inside_typed_text_is_text():
    assert one("Action: type(content='Action: buy milk')") == A.Type("Action: buy milk")


@pytest.mark.parametrize(
    "fence",
    ["```\n{}\n```", "```text\n{}\n```", "  \n```\n{}```  \n", "```\n{}", "{}\n```"],
)
def test_fence_and_whitespace_around_the_reply_are_ignored(fence):
    r = parse(fence.format("Thought: t\nAction: click(start_box='(5,6)')"))
    assert r.thought == "t"
    assert r.actions == (A.Click(point=A.Point(5, 6)),)


def test_think_block_is_thought_not_action():
    r = parse("<think>Action: click(start_box='(1,1)')</think>\nThought: ok\nAction: wait()")
    assert r.actions == (A.Wait(),)
    assert (r.thought, r.thinking) == ("ok", "Action: click(start_box='(1,1)')")


def test_bare_closing_think_tag_ends_the_thinking():
    r = parse("I should wait.</think>\nThought: waiting\nAction: wait()")
    assert (r.thinking, r.thought, r.actions) == ("I should wait.", "waiting", (A.Wait(),))


def test_typing_a_think_tag_is_just_text():
    assert one("Thought: x\nAction: type(content='</think>')") == A.Type("</think>")


def test_think_block_without_action_is_an_error():
    rejects("<think>Action: click(start_box='(1,1)')</think>", "Action")
    rejects("<think>Action: click(start_box='(1,1)')", "think")


@pytest.mark.parametrize(
    "text", ["Thought: I will click the button.", "click(start_box='(1,2)')", "", "   "]
)
def test_no_action_marker_is_an_error(text):
    rejects(text, "Action")


def test_empty_action_is_an_error():
    rejects("Thought: x\nAction:   ", "empty")


def test_error_message_tells_the_model_the_format():
    err = rejects("Action: clack(start_box='(1,2)')")
    assert "clack" in str(err) and "Thought:" in str(err) and "Action:" in str(err)


# --- several actions --------------------------------------------------------------------


def test_blank_line_separates_actions_in_order():
    r = parse("Action: click(start_box='(1,2)')\n\ntype(content='hi')\n  \t\nhotkey(key='enter')")
    assert r.actions == (
        A.Click(point=A.Point(1, 2)),
        A.Type("hi"),
        A.Hotkey(("enter",)),
    )


def test_single_newline_between_calls_is_an_error():
    rejects("Action: click(start_box='(1,2)')\ntype(content='hi')", "blank line")


def test_two_calls_on_one_line_is_an_error():
    rejects("Action: click(start_box='(1,2)') click(start_box='(1,2)')")
    rejects("Action: wait() wait()", "unexpected text")


def test_raw_newline_inside_a_string_belongs_to_it():
    assert one("Action: type(content='line one\nline two')") == A.Type("line one\nline two")
    assert one("Action: type(content='a\n\nb')") == A.Type("a\n\nb")


def test_trailing_text_after_the_actions_is_an_error():
    rejects("Action: click(start_box='(1,2)')\n\nThis opens the menu.", "expected '\\('")


# --- coordinates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "(100,200)",
        "(100, 200)",
        "<|box_start|>(100,200)<|box_end|>",
        "<point>100 200</point>",
        "(90,190,110,210)",
        "[90, 190, 110, 210]",
        "<bbox>90 190 110 210</bbox>",
        "<|box_start|>(90,190,110,210)<|box_end|>",
    ],
)
def test_coordinate_syntaxes(value):
    point = one(f"Action: click(start_box='{value}')").point
    assert (point.x, point.y) == (100, 200)


def test_box_centre_is_used():
    assert one("Action: click(start_box='(10,20,31,41)')").point == A.Point(20.5, 30.5)


@pytest.mark.parametrize("key", ["point", "start_point"])
def test_point_aliases_read_as_start_box(key):
    assert one(f"Action: click({key}='<point>7 8</point>')") == A.Click(point=A.Point(7, 8))


def test_end_point_reads_as_end_box():
    action = one("Action: drag(start_point='<point>1 2</point>', end_point='<point>3 4</point>')")
    assert action == A.Drag(start=A.Point(1, 2), end=A.Point(3, 4))


def test_the_same_coordinate_twice_is_an_error():
    rejects("Action: click(start_box='(1,2)', point='<point>1 2</point>')", "repeats")


@pytest.mark.parametrize(
    "value",
    [
        "(1)",
        "(1,2,3)",
        "(1,2,3,4,5)",
        "()",
        "(nan,2)",
        "(inf,2)",
        "(1e3,2)",
        "(True,2)",
        "(0x10,2)",
        "(1,,2)",
        "1,2",
        "(1 2)",
        "<point>1,2</point>",
        "<|box_start|>(1,2)",
        "[1, 2",
        "(" + "9" * 30 + ",2)",
    ],
)
def test_bad_coordinates_are_errors(value):
    rejects(f"Action: click(start_box='{value}')")


def test_unquoted_coordinate_is_an_error():
    rejects("Action: click(start_box=(1,2))", "quoted")


def test_uitars15_coordinates_are_pixels_of_the_resized_image():
    assert one("Action: click(start_box='(1932,1092)')").point == A.Point(1932, 1092)
    assert one("Action: click(start_box='(0,0)')").point == A.Point(0, 0)
    assert one("Action: click(start_box='(12.5,7.25)')").point == A.Point(12.5, 7.25)


@pytest.mark.parametrize("value", ["(1933,10)", "(10,1093)", "(-1,10)", "(10,-0.5)"])
def test_uitars15_out_of_range_is_an_error_not_clamped(value):
    err = rejects(f"Action: click(start_box='{value}')", "outside")
    assert "1932" in str(err)


def test_uitars15_box_corners_must_lie_within():
    rejects("Action: click(start_box='(1900,10,2000,20)')", "outside")


def test_uitars10_coordinates_are_relative_1000():
    assert one("Action: click(start_box='(1000,1000)')", V10).point == A.Point(1000, 1000)
    assert one("Action: click(start_box='[100, 100, 200, 300]')", V10).point == A.Point(150, 200)
    err = rejects("Action: click(start_box='(1001,5)')", "outside", V10)
    assert "1000" in str(err)
    # 1.0's range does not depend on the image size: (1500, 5) is out even on a big image
    with pytest.raises(ParseError):
        V10.parse("Action: click(start_box='(1500,5)')", (4000, 3000))


# --- actions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, cls",
    [
        ("click", A.Click),
        ("left_single", A.Click),
        ("left_double", A.DoubleClick),
        ("right_single", A.RightClick),
        ("hover", A.Hover),
        ("long_press", A.LongPress),
    ],
)
def test_pointer_actions(call, cls):
    assert one(f"Action: {call}(start_box='(3,4)')") == cls(point=A.Point(3, 4))


@pytest.mark.parametrize("call", ["click()", "left_double()", "hover(direction='up')"])
def test_pointer_action_without_box_is_an_error(call):
    rejects(f"Action: {call}")


def test_drag_needs_both_boxes():
    assert one("Action: drag(start_box='(1,2)', end_box='(3,4)')") == A.Drag(
        start=A.Point(1, 2), end=A.Point(3, 4)
    )
    rejects("Action: drag(start_box='(1,2)')", "end_box")
    rejects("Action: drag(end_box='(1,2)')", "start_box")


@pytest.mark.parametrize("direction", ["up", "down", "left", "right", "UP", " Down "])
def test_scroll_directions_lowercased(direction):
    action = one(f"Action: scroll(start_box='(5,6)', direction='{direction}')")
    assert action == A.Scroll(direction.strip().lower(), point=A.Point(5, 6))


def test_scroll_box_is_optional():
    assert one("Action: scroll(direction='down')") == A.Scroll("down")


@pytest.mark.parametrize("direction", ["sideways", "", "upward"])
def test_scroll_bad_direction_is_an_error(direction):
    rejects(f"Action: scroll(direction='{direction}')", "direction")


def test_scroll_without_direction_is_an_error():
    rejects("Action: scroll(start_box='(1,2)')", "direction")


@pytest.mark.parametrize(
    "value, keys",
    [
        ("ctrl c", ("ctrl", "c")),
        ("Ctrl+C", ("ctrl", "c")),
        ("ctrl + shift + T", ("ctrl", "shift", "t")),
        ("ArrowLeft", ("left",)),
        ("arrowright arrowup ArrowDown", ("right", "up", "down")),
        ("Enter", ("enter",)),
        ("ctrl +", ("ctrl", "+")),
    ],
)
def test_hotkey_keys(value, keys):
    assert one(f"Action: hotkey(key='{value}')") == A.Hotkey(keys)
    assert one(f"Action: hotkey(hotkey='{value}')") == A.Hotkey(keys)


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_empty_hotkey_is_an_error(value):
    rejects(f"Action: hotkey(key='{value}')", "empty")


def test_hotkey_without_key_is_an_error():
    rejects("Action: hotkey()", "key")


def test_press_and_release():
    r = parse("Action: press(key='Shift')\n\nclick(start_box='(1,1)')\n\nrelease(key='shift')")
    assert r.actions == (A.Press(("shift",)), A.Click(point=A.Point(1, 1)), A.Release(("shift",)))


@pytest.mark.parametrize(
    "content, text, enter",
    [
        (r"'hello'", "hello", False),
        (r"'it\'s'", "it's", False),
        (r"'say \"hi\"'", 'say "hi"', False),
        (r"'a\nb'", "a\nb", False),
        (r"'back\\slash'", "back\\slash", False),
        (r"'C:\Users\new'", "C:\\Users\new", False),  # \U unknown: kept; \n decoded
        (r"'C:\Program Files\app'", "C:\\Program Files\\app", False),
        ("'it's here'", "it's here", False),  # bare inner quote
        ('"it\'s here"', "it's here", False),  # double-quoted delimiter
        ("\"she said 'no'\"", "she said 'no'", False),
        (r"'search\n'", "search", True),
        (r"'search\n\n'", "search", True),
        ("'search\n'", "search", True),  # raw trailing newline
        ("'  spaced  '", "  spaced  ", False),
        ("'point=(1,2) start_box=x'", "point=(1,2) start_box=x", False),
        ("'f(x) = 2'", "f(x) = 2", False),
        ("''", "", False),
        ("'emoji ✓ 漢字'", "emoji ✓ 漢字", False),
    ],
)
def test_type_content_decoding(content, text, enter):
    assert one(f"Action: type(content={content})") == A.Type(text, enter=enter)


def test_type_unterminated_string_is_an_error():
    rejects("Action: type(content='hello", "never closed")
    rejects("Action: type(content='hello)", "never closed")


def test_missing_final_paren_is_repaired():
    assert one("Action: type(content='hello'") == A.Type("hello")
    assert one("Action: click(start_box='(1,2)'") == A.Click(point=A.Point(1, 2))
    assert one("Action: wait(") == A.Wait()


def test_missing_paren_before_another_action_is_not_repaired():
    rejects("Action: click(start_box='(1,2)'\n\nwait()")


def test_wait_finished_call_user():
    assert one("Action: wait()") == A.Wait()
    assert one("Action: finished()") == A.Finished("")
    assert one("Action: finished(content='The total is 42.\\nDone')") == A.Finished(
        "The total is 42.\nDone"
    )
    assert one("Action: call_user()") == A.CallUser()
    assert one("Action: call_user(content='I need the password')") == A.CallUser(
        "I need the password"
    )


def test_mobile_actions_are_parsed():
    assert one("Action: open_app(app_name='Settings')") == A.OpenApp("Settings")
    assert one("Action: press_home()") == A.PressHome()
    assert one("Action: press_back()") == A.PressBack()
    assert one("Action: long_press(start_box='(5,5)', time='')") == A.LongPress(point=A.Point(5, 5))
    assert all(A.is_mobile(a) for a in parse("Action: press_home()").actions)


@pytest.mark.parametrize(
    "action",
    [
        "double_click(start_box='(1,2)')",
        "select(start_box='(1,2)')",
        "exec(content='rm -rf /')",
        "__import__('os').system('ls')",
        "click[start_box='(1,2)']",
        "pyautogui.click(1, 2)",
        "click(1, 2)",
        "click(start_box='(1,2)', button='right')",
        "wait(seconds='3')",
        "type(text='hi')",
        "type(content='a', content='b')",
        "Click(start_box='(1,2)')",
    ],
)
def test_anything_else_is_an_error(action):
    rejects(f"Action: {action}")


def test_nothing_runs_when_any_call_is_bad():
    rejects("Action: click(start_box='(1,2)')\n\nclick(start_box='(99999,2)')")


def test_parse_error_is_a_value_error_with_text():
    err = rejects("Action: scroll(direction='sideways')")
    assert isinstance(err, ValueError) and str(err)
