"""The qwen3.5 dialect: Qwen3-Coder XML (and JSON) computer_use calls -> actions, strictly.

The fuzz properties are test_parser_fuzz's (every dialect there runs this one too), here fed
with the XML grammar's own pieces and mutated XML replies, plus the XML round trip.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import actions as A
from agent.actions import ParseError
from agent.dialects import dialect_for_checkpoint, get_dialect
from agent.dialects.qwen3vl import FAILURE_MESSAGE
from tests.test_parser_fuzz import FUZZ, PIECES, QWEN_ACTION, THOUGHT, parse_or_parse_error

D = get_dialect("qwen3.5")
SIZE = (1920, 1088)


def xml(**arguments) -> str:
    params = "".join(
        f"<parameter={k}>\n{v if isinstance(v, str) else json.dumps(v)}\n</parameter>\n"
        for k, v in arguments.items())
    return f"<tool_call>\n<function=computer_use>\n{params}</function>\n</tool_call>"


def one(text: str) -> A.Action:
    response = D.parse(text, SIZE)
    assert len(response.actions) == 1, response.actions
    return response.actions[0]


def rejects(text: str, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        D.parse(text, SIZE)


def test_xml_calls_map_onto_our_actions():
    assert one(xml(action="left_click", coordinate=[500, 250])) == A.Click(A.Point(500, 250))
    assert one(xml(action="double_click", coordinate=[1, 2])) == A.DoubleClick(A.Point(1, 2))
    assert one(xml(action="key", keys=["ctrl", "c"])) == A.Hotkey(("ctrl", "c"))
    assert one(xml(action="scroll", pixels=-3, coordinate=[10, 10])) == A.Scroll(
        "down", point=A.Point(10, 10), amount=3)
    assert one(xml(action="terminate", status="success")) == A.Finished()
    assert one(xml(action="terminate", status="failure")) == A.CallUser(FAILURE_MESSAGE)
    assert one(xml(action="wait", time=2)) == A.Wait(2)


def test_text_is_verbatim_inside_the_layout_newlines():
    assert one(xml(action="type", text="hello\n")) == A.Type("hello", enter=True)
    assert one(xml(action="type", text="two\nlines")) == A.Type("two\nlines", enter=False)
    assert one(xml(action="type", text=" spaced ")) == A.Type(" spaced ", enter=False)
    assert one(xml(action="answer", text="42")) == A.Finished("42")


def test_thought_and_several_calls_json_and_xml_mixed():
    json_call = ('<tool_call>\n{"name": "computer_use", "arguments": {"action": '
                 '"left_click_drag", "coordinate": [30, 40]}}\n</tool_call>')
    reply = ("<think>plan</think>\nThe slider is at the left.\n"
             + xml(action="mouse_move", coordinate=[10, 20]) + "\n" + json_call)
    response = D.parse(reply, SIZE)
    assert response.thought == "plan\nThe slider is at the left."
    assert response.actions == (A.Drag(A.Point(10, 20), A.Point(30, 40)),)


def test_cua_tool_name_computer_is_the_same_tool():
    text = xml(action="left_click", coordinate=[7, 8]).replace("computer_use", "computer")
    assert one(text) == A.Click(A.Point(7, 8))


def test_missing_final_close_tag_is_the_one_repair():
    assert one(xml(action="left_click", coordinate=[5, 5]).removesuffix("</tool_call>")) == \
        A.Click(A.Point(5, 5))


@pytest.mark.parametrize(("text", "match"), [
    ("I will click.", "no <tool_call>"),
    (xml(action="left_click", coordinate=[5, 5]).replace("computer_use", "browser"),
     "unknown function 'browser'"),
    (xml(action="left_click", coordinate=[5, 5], button="left"), "no argument 'button'"),
    (xml(action="left_click", coordinate=[5, 5]).replace(
        "</function>", "<parameter=action>\nright_click\n</parameter>\n</function>"),
     "given twice"),
    (xml(action="left_click", coordinate=[5, 5]).replace("</parameter>\n</function>",
                                                         "</function>"), "never closed"),
    (xml(action="left_click", coordinate=[5, 5]).replace("</function>", ""), "never closed"),
    (xml(action="left_click", coordinate=[5, 5]) + "\ndone", "unexpected text after"),
    (xml(action="left_click", coordinate="[NaN, 5]"), "not a number"),
    (xml(action="left_click", coordinate=[1001, 5]), "within 0..1000"),
    (xml(action="left_click", coordinate="[true, 5]"), "finite number"),
    (xml(action="left_click", coordinate="(5, 5)"), "not valid JSON"),
    (xml(action="left_click"), "needs coordinate"),
    (xml(action="fly", coordinate=[5, 5]), "unknown action"),
    ("<tool_call>\nleft_click(5, 5)\n</tool_call>", "<function=computer_use> or a JSON"),
])
def test_malformed_replies_raise_parse_errors_the_model_can_act_on(text, match):
    rejects(text, match)


def test_replies_are_written_in_xml_and_read_back():
    reply = D.format_reply("Open it.", [A.Type("hi", enter=True), A.Drag(A.Point(1, 2),
                                                                         A.Point(3, 4))])
    assert "<function=computer_use>" in reply and '"name"' not in reply
    assert D.parse(reply, SIZE).actions == (A.Type("hi", enter=True),
                                            A.Drag(A.Point(1, 2), A.Point(3, 4)))


def test_prompt_names_the_xml_grammar_and_the_tool():
    prompt = D.system_prompt()
    assert "<function=example_function_name>" in prompt and '"name": "computer_use"' in prompt
    assert (D.space, D.image_factor) == ("relative1000", 32)


@pytest.mark.parametrize("config", [
    {"model_type": "qwen3_5_moe"}, {"model_type": "qwen3_5"},
    {"architectures": ["Qwen3_5MoeForConditionalGeneration"]},
    {"architectures": ["Qwen3_5ForConditionalGeneration"]},
])
def test_detected_from_the_checkpoint_config(config):
    assert dialect_for_checkpoint(config) == "qwen3.5"


XML_PIECES = PIECES + [
    "<function=computer_use>", "</function>", "<parameter=action>", "<parameter=coordinate>",
    "<parameter=text>", "<parameter=keys>", "</parameter>", "<function=", "<parameter=",
    "left_click", "type", "scroll", "\n[500, 500]\n", '["ctrl", "c"]', "terminate", "success",
]
XML_VALID = [
    xml(action="left_click", coordinate=[500, 500]),
    "thought\n" + xml(action="mouse_move", coordinate=[1, 2]) + xml(
        action="left_click_drag", coordinate=[3, 4]),
    xml(action="type", text="a\nb\n"),
    xml(action="key", keys=["ctrl", "shift", "t"]) + "\n" + xml(action="terminate",
                                                                status="success"),
]


@FUZZ
@given(st.lists(st.sampled_from(XML_PIECES), max_size=40).map("".join))
def test_text_made_of_xml_pieces(text):
    parse_or_parse_error(text)


@FUZZ
@given(st.sampled_from(XML_VALID), st.lists(st.tuples(
    st.sampled_from(["insert", "delete", "replace"]), st.floats(0, 1),
    st.one_of(st.sampled_from(XML_PIECES), st.characters())), min_size=1, max_size=6))
def test_mutated_xml_replies(reply, mutations):
    text = reply
    for kind, where, piece in mutations:
        at = int(where * len(text))
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + len(piece):]
        else:
            text = text[:at] + piece + text[at + 1:]
    parse_or_parse_error(text)


def test_xml_seed_replies_are_valid():
    for reply in XML_VALID:
        assert D.parse(reply, SIZE).actions


@FUZZ
@given(THOUGHT, st.lists(QWEN_ACTION, min_size=1, max_size=4))
def test_qwen35_round_trip(thought, actions):
    response = D.parse(D.format_reply(thought, actions), SIZE)
    assert (response.thought, response.actions) == (thought, tuple(actions))
