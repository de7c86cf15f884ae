"""The one key-name table: model spellings -> canonical names -> the keys pressed per OS.

Three parts of the agent read key names and must agree on them, or the safety check
judges one chord while the executor presses another:

- the dialect parsers turn a model's "Ctrl+Shift+T", "ctrl-c", "Page Down" or
  ["control", "ArrowLeft"] into canonical names (`parse_keys`);
- the safety policy judges the chord the executor will really press (`to_platform`),
  so "ctrl+alt+esc" is judged as macOS' Force Quit (command+option+esc) on a Mac;
- the executor presses `to_platform` names through pyautogui.

Canonical names are pyautogui's platform-neutral ones ("ctrl", "alt", "shift", "win",
"command", "enter", "esc", "pagedown", "left", "f4", "a", "+"). The platform step is
where the OSes differ: on macOS the primary shortcut modifier is command, so "ctrl" and
"win" become "command" and "alt" becomes "option"; elsewhere "command" means the primary
modifier, ctrl.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

from agent.actions import ParseError

# Spellings models and people use -> canonical name. Only unambiguous synonyms.
ALIASES: dict[str, str] = {
    "control": "ctrl", "ctl": "ctrl", "lctrl": "ctrlleft", "rctrl": "ctrlright",
    "cmd": "command", "meta": "win", "super": "win", "windows": "win",
    "lwin": "winleft", "rwin": "winright", "opt": "alt", "option": "alt",
    "return": "enter", "kpenter": "enter", "kp_enter": "enter", "numpadenter": "enter",
    "keypadenter": "enter", "escape": "esc",
    "pgup": "pageup", "page_up": "pageup", "prior": "pageup",
    "pgdn": "pagedown", "page_down": "pagedown", "next": "pagedown",
    "arrowup": "up", "arrowdown": "down", "arrowleft": "left", "arrowright": "right",
    "arrow_up": "up", "arrow_down": "down", "arrow_left": "left", "arrow_right": "right",
    "uparrow": "up", "downarrow": "down", "leftarrow": "left", "rightarrow": "right",
    "del": "delete", "back": "backspace", "bksp": "backspace", "spacebar": "space",
    "ins": "insert", "caps": "capslock", "caps_lock": "capslock", "menu": "apps",
    "plus": "+", "minus": "-",
}

# Key names people write as two words. Joined before anything else, so "Page Down" is
# one key (not page + down) and "shift left" stays two keys.
TWO_WORD_KEYS: dict[tuple[str, str], str] = {
    ("page", "down"): "pagedown", ("page", "up"): "pageup", ("page", "dn"): "pagedown",
    ("arrow", "up"): "up", ("arrow", "down"): "down",
    ("arrow", "left"): "left", ("arrow", "right"): "right",
    ("up", "arrow"): "up", ("down", "arrow"): "down",
    ("left", "arrow"): "left", ("right", "arrow"): "right",
    ("caps", "lock"): "capslock", ("num", "lock"): "numlock", ("scroll", "lock"): "scrolllock",
    ("print", "screen"): "printscreen", ("back", "space"): "backspace",
    ("keypad", "enter"): "enter", ("numpad", "enter"): "enter", ("num", "enter"): "enter",
    ("kp", "enter"): "enter", ("space", "bar"): "space",
}
_TWO_WORDS = re.compile(
    r"(?<![a-z0-9])("
    + "|".join(rf"{a}[\s_-]+{b}" for a, b in TWO_WORD_KEYS)
    + r")(?![a-z0-9])"
)

MODIFIERS = frozenset({"ctrl", "alt", "shift", "win", "command", "option", "fn"})
# Left/right variants judged like the plain modifier (pyautogui presses either side).
_SIDES = {
    "ctrlleft": "ctrl", "ctrlright": "ctrl", "shiftleft": "shift", "shiftright": "shift",
    "altleft": "alt", "altright": "alt", "winleft": "win", "winright": "win",
    "optionleft": "option", "optionright": "option",
}
_SUPER = ("win", "winleft", "winright")


def canonical(name: str) -> str:
    """One key name -> its canonical spelling ("Control" -> "ctrl", "C" -> "c")."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"key name must be a non-empty string, got {name!r}")
    if name == " ":
        return "space"
    key = name.strip().lower()
    if not key:
        raise ValueError(f"key name must be a non-empty string, got {name!r}")
    key = re.sub(r"\s+", " ", key)
    key = TWO_WORD_KEYS.get(tuple(key.split(" ")), key)  # type: ignore[arg-type]
    return ALIASES.get(key, key)


def _join_two_word_names(text: str) -> str:
    return _TWO_WORDS.sub(lambda m: TWO_WORD_KEYS[tuple(re.split(r"[\s_-]+", m.group(1)))], text)


def _chord_tokens(text: str) -> list[str]:
    """Split one chord written with spaces, '+' or '-' between keys into key names.

    '+' and '-' between two keys separate them; at either end, or right after a
    separator, they are the plus / minus key ("ctrl++", "ctrl -", "-").
    """
    items = re.findall(r"[^\s+\-]+|[+\-]", text)
    keys: list[str] = []
    after_separator = False
    for i, item in enumerate(items):
        if item in "+-":
            is_separator = 0 < i < len(items) - 1 and not after_separator
            if is_separator:
                after_separator = True
                continue
            keys.append(item)
        else:
            keys.append(item)
        after_separator = False
    return keys


def parse_keys(spec: str | list[str], *, what: str = "key") -> tuple[str, ...]:
    """A model's key spec -> canonical names: 'Ctrl+Shift T', 'ctrl-c', 'Page Down' or
    ["ctrl", "c"]. Raises ParseError (fit to show the model) when it names no key."""
    items = [spec] if isinstance(spec, str) else list(spec)
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ParseError(f"{what} must be text, got {item!r}")
        if item == " ":
            keys.append("space")
            continue
        text = _join_two_word_names(item.lower())
        keys.extend(canonical(k) for k in _chord_tokens(text))
    if not keys:
        raise ParseError(f"{what} is empty: name the key(s) to press, e.g. 'ctrl c'")
    return tuple(keys)


def map_key(name: str, platform: str | None = None) -> str:
    """One key name (any spelling) -> the pyautogui name pressed on `platform` (default:
    this OS, read at call time)."""
    key = canonical(name)
    if (platform or sys.platform) == "darwin":
        if key in ("ctrl", "command") or key in _SUPER:
            return "command"
        if key == "alt":
            return "option"
        return key
    if key == "command":
        return "ctrl"
    return key


def map_keys(names: Iterable[str], platform: str | None = None, known=None) -> list[str]:
    """Map every key; with `known` (pyautogui.KEYBOARD_KEYS) reject unknown names."""
    names = list(names)
    keys = [map_key(n, platform) for n in names]
    if known is not None:
        unknown = [n for n, k in zip(names, keys) if k not in known]
        if unknown:
            raise ValueError(f"unknown key name(s): {', '.join(map(repr, unknown))}")
    return keys


def to_platform(keys: Iterable[str], platform: str | None = None) -> frozenset[str]:
    """The chord the executor presses on `platform`, left/right sides folded, for judging."""
    return frozenset(_SIDES.get(k, k) for k in map_keys(keys, platform))


def is_modifier(key: str) -> bool:
    return _SIDES.get(key, key) in MODIFIERS
