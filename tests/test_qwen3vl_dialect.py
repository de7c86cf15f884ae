"""The qwen3-vl dialect: computer_use tool calls -> actions, with UI-TARS' strictness."""

from __future__ import annotations

import json

import pytest

from agent import actions as A
from agent.actions import ParseError
from agent.dialects import get_dialect
from agent.dialects.prompts import QWEN3VL_TOOL
from agent.dialects.qwen3vl import FAILURE_MESSAGE

D = get_dialect("qwen3-vl")
SIZE = (1920, 1088)


def call(**arguments) -> str:
    body = json.dumps({"name": "computer_use", "arguments": arguments})
    return f"<tool_call>\n{body}\n</tool_call>"


def parse(text: str) -> A.Response:
    return D.parse(text, SIZE)


def one(**arguments) -> A.Action:
    response = parse(call(**arguments))
    assert len(response.actions) == 1, response.actions
    return response.actions[0]


def rejects(text: str, match: str | None = None) -> ParseError:
    with pytest.raises(ParseError, match=match) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    "action, cls",
    [
        ("left_click", A.Click),
        ("double_click", A.DoubleClick),
        ("triple_click", A.TripleClick),
        ("right_click", A.RightClick),
        ("middle_click", A.MiddleClick),
        ("mouse_move", A.Hover),
    ],
)
def test_pointer_actions(action, cls):
    assert one(action=action, coordinate=[250, 750]) == cls(point=A.Point(250, 750))


@pytest.mark.parametrize("action", ["left_click", "double_click", "mouse_move", "triple_click"])
def test_missing_coordinate_is_an_error(action):
    rejects(call(action=action), "coordinate")


@pytest.mark.parametrize(
    "coordinate",
    [
        [1001, 5],
        [5, -1],
        [5],
        [1, 2, 3],
        [True, 5],
        ["5", 5],
        [None, 5],
        [10**400, 5],  # an integer too large for a float
        "500,500",
        {"x": 1},
    ],
)
def test_bad_coordinates_are_errors(coordinate):
    rejects(call(action="left_click", coordinate=coordinate), "coordinate")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_errors(literal):
    body = '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [%s, 5]}}'
    rejects(f"<tool_call>{body % literal}</tool_call>")


def test_coordinates_are_relative_1000_whatever_the_image():
    assert one(action="left_click", coordinate=[1000, 0]).point == A.Point(1000, 0)
    assert D.parse(call(action="left_click", coordinate=[999, 999]), (64, 64)).actions


def test_thought_is_the_text_before_the_tool_call():
    r = parse("I see the Save button at the top.\n" + call(action="left_click", coordinate=[1, 2]))
    assert r.thought == "I see the Save button at the top."
    assert r.raw.startswith("I see")


def test_think_block_is_kept_apart_from_the_thought():
    r = parse("<think>hmm</think>\nThought: click it\n" + call(action="wait", time=1))
    assert (r.thinking, r.thought) == ("hmm", "click it")
    assert r.actions == (A.Wait(1),)


def test_typing_a_think_tag_is_just_text():
    assert one(action="type", text="</think>") == A.Type("</think>")
    r = parse("done thinking</think>" + call(action="type", text="</think>"))
    assert (r.thinking, r.thought, r.actions) == ("done thinking", "", (A.Type("</think>"),))


def test_several_tool_calls_in_order():
    text = "\n".join(
        [
            "Typing the query.",
            call(action="left_click", coordinate=[500, 100]),
            call(action="type", text="weather"),
            call(action="key", keys=["Return"]),
        ]
    )
    assert parse(text).actions == (
        A.Click(point=A.Point(500, 100)),
        A.Type("weather"),
        A.Hotkey(("enter",)),
    )


def test_missing_final_close_tag_is_repaired():
    text = call(action="left_click", coordinate=[1, 2]).removesuffix("</tool_call>")
    assert parse(text).actions == (A.Click(point=A.Point(1, 2)),)


@pytest.mark.parametrize(
    "text, match",
    [
        ("I will click the button.", "tool_call"),
        ("", "tool_call"),
        ("<tool_call>{not json}</tool_call>", "JSON"),
        ("<tool_call>[1, 2]</tool_call>", "object"),
        ('<tool_call>{"name": "computer_use"}</tool_call>', "arguments"),
        ('<tool_call>{"name": "shell", "arguments": {"action": "key"}}</tool_call>', "shell"),
        ("<tool_call>" + "[" * 100000 + "</tool_call>", "JSON"),
        (call(action="left_click", coordinate=[1, 2]) + "\nDone!", "unexpected text"),
    ],
)
def test_malformed_replies(text, match):
    rejects(text, match)


@pytest.mark.parametrize("action", ["click", "drag", "screenshot", "LEFT_CLICK", None, 3])
def test_unknown_action_is_an_error(action):
    rejects(call(action=action, coordinate=[1, 2]), "unknown action")


def test_unknown_argument_is_an_error():
    rejects(call(action="left_click", coordinate=[1, 2], button="left"), "button")


def test_arguments_given_as_a_json_string():
    args = json.dumps({"action": "left_click", "coordinate": [3, 4]})
    text = "<tool_call>" + json.dumps({"name": "computer_use", "arguments": args}) + "</tool_call>"
    assert parse(text).actions == (A.Click(point=A.Point(3, 4)),)


def test_key_and_type():
    assert one(action="key", keys=["ctrl", "shift", "T"]) == A.Hotkey(("ctrl", "shift", "t"))
    assert one(action="key", keys=["ctrl+c"]) == A.Hotkey(("ctrl", "c"))
    rejects(call(action="key", keys=[]), "empty")
    rejects(call(action="key"), "keys")
    rejects(call(action="key", keys=5), "keys")
    assert one(action="type", text="C:\\Users\\it's") == A.Type("C:\\Users\\it's")
    assert one(action="type", text="hello\n") == A.Type("hello", enter=True)
    rejects(call(action="type"), "text")
    rejects(call(action="type", text=["a"]), "text")


@pytest.mark.parametrize(
    "action, pixels, direction",
    [("scroll", 5, "up"), ("scroll", -3, "down"), ("hscroll", 2, "right"), ("hscroll", -7, "left")],
)
def test_scroll_directions_and_amount(action, pixels, direction):
    assert one(action=action, pixels=pixels) == A.Scroll(direction, amount=abs(pixels))
    assert one(action=action, pixels=pixels, coordinate=[10, 20]) == A.Scroll(
        direction, point=A.Point(10, 20), amount=abs(pixels)
    )


def test_scroll_needs_non_zero_pixels():
    rejects(call(action="scroll"), "pixels")
    rejects(call(action="scroll", pixels=0), "non-zero")
    rejects(call(action="scroll", pixels="up"), "pixels")


def test_drag_after_mouse_move_is_one_drag():
    text = call(action="mouse_move", coordinate=[10, 20]) + call(
        action="left_click_drag", coordinate=[30, 40]
    )
    assert parse(text).actions == (A.Drag(start=A.Point(10, 20), end=A.Point(30, 40)),)


def test_drag_with_start_coordinate():
    action = one(action="left_click_drag", start_coordinate=[1, 2], coordinate=[3, 4])
    assert action == A.Drag(start=A.Point(1, 2), end=A.Point(3, 4))


def test_drag_without_a_known_start_is_an_error():
    rejects(call(action="left_click_drag", coordinate=[3, 4]), "mouse_move")
    rejects(call(action="left_click_drag"), "coordinate")


def test_wait_terminate_answer():
    assert one(action="wait", time=2.5) == A.Wait(2.5)
    assert one(action="wait") == A.Wait(5.0)
    rejects(call(action="wait", time=-1), "negative")
    assert one(action="terminate", status="success") == A.Finished("")
    assert one(action="terminate", status="failure") == A.CallUser(FAILURE_MESSAGE)
    rejects(call(action="terminate", status="done"), "status")
    rejects(call(action="terminate"), "status")
    assert one(action="answer", text="42") == A.Finished("42")


def test_error_message_tells_the_model_the_format():
    err = rejects(call(action="fly"))
    assert "computer_use" in str(err) and "<tool_call>" in str(err)


def test_system_prompt_carries_the_exact_tool_schema():
    prompt = D.system_prompt()
    assert json.dumps(QWEN3VL_TOOL, ensure_ascii=False) in prompt
    assert prompt.startswith("You are a helpful assistant.")
    assert "<tool_call>" in prompt and "</tools>" in prompt
    schema = QWEN3VL_TOOL["function"]["parameters"]["properties"]
    assert schema["action"]["enum"] == [
        "key", "type", "mouse_move", "left_click", "left_click_drag", "right_click",
        "middle_click", "double_click", "triple_click", "scroll", "hscroll", "wait",
        "terminate", "answer",
    ]  # fmt: skip
    assert "1000x1000" in QWEN3VL_TOOL["function"]["description"]


def test_every_schema_action_is_understood():
    samples = {
        "key": {"keys": ["a"]},
        "type": {"text": "a"},
        "left_click_drag": {"start_coordinate": [1, 1], "coordinate": [2, 2]},
        "scroll": {"pixels": 1},
        "hscroll": {"pixels": 1},
        "wait": {"time": 1},
        "terminate": {"status": "success"},
        "answer": {"text": "a"},
    }
    for action in QWEN3VL_TOOL["function"]["parameters"]["properties"]["action"]["enum"]:
        arguments = samples.get(action, {"coordinate": [1, 1]})
        assert parse(call(action=action, **arguments)).actions, action
