"""The one key-name table: parsing model spellings (through both dialects' parsers),
and the keys pressed on each OS."""

from __future__ import annotations

import json

import pytest

from agent import actions as A
from agent.keys import map_keys, parse_keys, to_platform

SPELLINGS = [
    ("Page Down", ("pagedown",)),
    ("page up", ("pageup",)),
    ("shift Page Down", ("shift", "pagedown")),
    ("ctrl+Page_Up", ("ctrl", "pageup")),
    ("ctrl-c", ("ctrl", "c")),
    ("Ctrl-Shift-T", ("ctrl", "shift", "t")),
    ("ctrl-", ("ctrl", "-")),
    ("ctrl - c", ("ctrl", "c")),
    ("-", ("-",)),
    ("ctrl++", ("ctrl", "+")),
    ("ctrl +", ("ctrl", "+")),
    ("shift-left", ("shift", "left")),
    ("shift left", ("shift", "left")),
    ("Left Arrow", ("left",)),
    ("arrow down", ("down",)),
    ("caps lock", ("capslock",)),
    ("Print Screen", ("printscreen",)),
    ("keypad enter", ("enter",)),
    ("Return", ("enter",)),
    ("Escape", ("esc",)),
    ("cmd shift 4", ("command", "shift", "4")),
    ("super", ("win",)),
    ("Control Alt Delete", ("ctrl", "alt", "delete")),
]


@pytest.mark.parametrize(("spec", "keys"), SPELLINGS)
def test_model_spellings_become_canonical_keys(spec, keys):
    assert parse_keys(spec) == keys


@pytest.mark.parametrize(("spec", "keys"), SPELLINGS)
def test_uitars_parser_reads_the_same_keys(spec, keys):
    from agent.dialects import get_dialect

    dialect = get_dialect("uitars-1.5")
    reply = f"Thought: keys\nAction: hotkey(key='{spec}')"
    assert dialect.parse(reply, (1000, 1000)).actions == (A.Hotkey(keys),)


@pytest.mark.parametrize(("spec", "keys"), SPELLINGS)
def test_qwen3vl_parser_reads_the_same_keys(spec, keys):
    from agent.dialects import get_dialect

    dialect = get_dialect("qwen3-vl")
    call = {"name": "computer_use", "arguments": {"action": "key", "keys": [spec]}}
    reply = f"<tool_call>\n{json.dumps(call)}\n</tool_call>"
    assert dialect.parse(reply, (1000, 1000)).actions == (A.Hotkey(keys),)


def test_qwen3vl_key_list_with_two_word_names():
    from agent.dialects import get_dialect

    dialect = get_dialect("qwen3-vl")
    call = {"name": "computer_use", "arguments": {"action": "key", "keys": ["shift", "Page Down"]}}
    reply = f"<tool_call>\n{json.dumps(call)}\n</tool_call>"
    assert dialect.parse(reply, (1000, 1000)).actions == (A.Hotkey(("shift", "pagedown")),)


@pytest.mark.parametrize("spec", ["", "  ", "\t"])
def test_no_key_is_a_parse_error(spec):
    with pytest.raises(A.ParseError, match="empty"):
        parse_keys(spec)


@pytest.mark.parametrize(
    ("keys", "platform", "pressed"),
    [
        (("ctrl", "alt", "esc"), "darwin", ["command", "option", "esc"]),
        (("win", "l"), "darwin", ["command", "l"]),
        (("command", "q"), "linux", ["ctrl", "q"]),
        (("win", "l"), "win32", ["win", "l"]),
        (("pagedown",), "linux", ["pagedown"]),
    ],
)
def test_the_keys_pressed_per_os(keys, platform, pressed):
    assert map_keys(keys, platform) == pressed
    assert to_platform(keys, platform) == frozenset(pressed)


def test_left_and_right_modifiers_are_judged_as_the_modifier():
    assert to_platform(("ctrlleft", "w"), "linux") == {"ctrl", "w"}
