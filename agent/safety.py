"""The safety policy: run an action, ask a person first, or refuse it.

A model acting on the real screen can close a window with unsaved work, log the person
out or type `sudo rm -rf ~` into a terminal. Pixels cannot tell us whether a field is a
password box or a shell, so the policy judges the *effect* of what is sent:

- `off`:    everything runs.
- `normal`: a person confirms key chords that close, quit, delete, lock or log out —
            judged on the chord the executor really presses on this OS (agent/keys.py),
            together with any keys still held down by an earlier `press`; text that is
            submitted (Enter, Return, keypad Enter, ctrl+Enter…, or a newline inside
            typed text) when the text typed into the focused field since the last submit
            or focus change — across actions and steps — is a risky command
            (agent/shell_commands.py); and any action right after the model handed
            control to the person (call_user), because the situation has changed.
- `strict`: a person confirms every action that touches the screen.

`finished`, `call_user` and `wait` touch nothing and always run. Without a confirm
callback (a headless run) an action that needs confirmation is refused, and the reason
says so, so the run ends visibly instead of doing something nobody approved.

The policy keeps the state it needs to judge effects (the focused field's text, the held
keys) from one `decide` to the next: one SafetyPolicy per run, `start_run()` at its start.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from agent import actions as A
from agent.keys import canonical, is_modifier, to_platform
from agent.shell_commands import risky_command

log = logging.getLogger(__name__)

Level = Literal["strict", "normal", "off"]
LEVELS: tuple[str, ...] = ("strict", "normal", "off")
Verdict = Literal["run", "confirmed", "refused"]
Confirm = Callable[[A.Action, str], bool]

# Chords that close, quit, delete, lock or log out, as the executor presses them (names
# after agent.keys.to_platform: "command"/"option" only on macOS, "win" elsewhere).
RISKY_CHORDS: dict[frozenset[str], str] = {
    frozenset(k): why
    for k, why in [
        # Windows and Linux desktops
        (("alt", "f4"), "closes the window"),
        (("ctrl", "f4"), "closes the tab or document"),
        (("ctrl", "w"), "closes the tab or window"),
        (("ctrl", "shift", "w"), "closes the whole window"),
        (("ctrl", "q"), "quits the application"),
        (("ctrl", "shift", "q"), "quits or logs out"),
        (("win", "q"), "closes the window (GNOME, KDE, tiling window managers)"),
        (("win", "shift", "q"), "closes the window (i3, sway)"),
        (("win", "shift", "c"), "closes the window (dwm, awesome, xmonad)"),
        (("win", "shift", "e"), "exits the session (i3, sway)"),
        (("win", "f4"), "closes the window"),
        (("alt", "shift", "f4"), "closes the window"),
        (("shift", "delete"), "deletes permanently"),
        (("ctrl", "shift", "delete"), "clears browsing data"),
        (("ctrl", "alt", "delete"), "opens the logout / task manager screen"),
        (("ctrl", "alt", "backspace"), "kills the graphical session"),
        (("ctrl", "alt", "esc"), "kills the window clicked next (KDE xkill)"),
        (("win", "l"), "locks the session"),
        (("ctrl", "alt", "l"), "locks the session"),
        (("ctrl", "alt", "end"), "opens the logout screen"),
        # macOS
        (("command", "w"), "closes the window"),
        (("command", "shift", "w"), "closes the whole window"),
        (("command", "option", "w"), "closes every window"),
        (("command", "q"), "quits the application"),
        (("command", "shift", "q"), "logs out"),
        (("command", "option", "shift", "q"), "logs out immediately"),
        (("command", "option", "esc"), "opens Force Quit"),
        (("command", "option", "shift", "esc"), "force-quits the front application"),
        (("command", "delete"), "moves to the trash"),
        (("command", "backspace"), "moves to the trash"),
        (("command", "option", "delete"), "deletes immediately"),
        (("command", "shift", "delete"), "empties the trash"),
        (("command", "option", "shift", "delete"), "empties the trash without asking"),
        (("command", "ctrl", "q"), "locks the session"),
    ]
}
# Linux virtual-terminal switches leave the graphical session for a text console.
RISKY_CHORDS.update(
    {frozenset(("ctrl", "alt", f"f{n}")): "switches to a text console" for n in range(1, 13)}
)

SUBMIT_KEYS = frozenset({"enter"})  # Return and keypad Enter are "enter" (agent/keys.py)
# A terminal reads ctrl+m as Return and ctrl+j as a newline: they submit the line too.
SUBMIT_CHORDS = frozenset({frozenset({"ctrl", "m"}), frozenset({"ctrl", "j"})})
# Keys that move the keyboard focus to another field or window: the text typed so far
# no longer goes where the next Enter goes.
FOCUS_KEYS = frozenset({"tab"})
FIELD_RADIUS = 80  # logical px: a click this close to where typing began keeps the field
POINTER_FOCUS = (A.Click, A.DoubleClick, A.TripleClick, A.RightClick, A.MiddleClick, A.Drag)

# Extra regular expressions a person may configure (settings.safety_command_patterns);
# None of them by default: the structural recogniser in agent/shell_commands.py decides.
DEFAULT_COMMAND_PATTERNS: tuple[str, ...] = ()

# Actions that touch neither screen nor keyboard.
HARMLESS = (A.Finished, A.CallUser, A.Wait)


class _FieldState:
    """What the keyboard has done so far in this run: the focused field's unsubmitted
    text and the keys held down by `press` (as canonical names)."""

    def __init__(self) -> None:
        self.text = ""
        self.held: list[str] = []
        self.field_point: tuple[float, float] | None = None

    def click(self, action: A.Action) -> None:
        point = _where(action)
        near = (
            point is not None
            and self.field_point is not None
            and abs(point[0] - self.field_point[0]) <= FIELD_RADIUS
            and abs(point[1] - self.field_point[1]) <= FIELD_RADIUS
        )
        if not near:
            self.text = ""
            self.field_point = point

    def chord(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """`keys` pressed while the held keys are still down, held ones first."""
        return tuple(self.held) + tuple(k for k in keys if k not in self.held)


def _submits(chord) -> bool:
    """Whether pressing `chord` (canonical names) submits the focused field's text."""
    keys = frozenset(chord)
    return bool(keys & SUBMIT_KEYS) or keys in SUBMIT_CHORDS


def _where(action: A.Action) -> tuple[float, float] | None:
    point = getattr(action, "screen", None) or getattr(action, "screen_end", None)
    point = point or getattr(action, "point", None) or getattr(action, "end", None)
    return (point.x, point.y) if point is not None else None


@dataclass(frozen=True)
class Decision:
    """The verdict on one action and why, as recorded in the trajectory."""

    verdict: Verdict
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in ("run", "confirmed", "refused"):
            raise ValueError(f"unknown verdict {self.verdict!r}")

    @property
    def allowed(self) -> bool:
        return self.verdict != "refused"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class SafetyPolicy:
    """Decides per action; asks `confirm(action, why)` when a person must approve.

    command_patterns: regular expressions (searched case-insensitively) that replace the
    built-in command recogniser for submitted text, as a person configured them; None
    keeps the recogniser. platform: the OS the keys are pressed on (None: this one).
    """

    def __init__(
        self,
        level: Level = "normal",
        confirm: Confirm | None = None,
        command_patterns: list[str] | None = None,
        *,
        platform: str | None = None,
    ):
        if level not in LEVELS:
            raise ValueError(f"unknown safety level {level!r}; choose one of {', '.join(LEVELS)}")
        self.level = level
        self.confirm = confirm
        self.platform = platform or sys.platform
        self._patterns: list[re.Pattern[str]] | None = None
        if command_patterns is not None:
            self._patterns = []
            for pattern in command_patterns:
                try:
                    self._patterns.append(re.compile(pattern, re.IGNORECASE))
                except re.error as exc:
                    raise ValueError(f"invalid command pattern {pattern!r}: {exc}") from exc
        self._field = _FieldState()

    def start_run(self) -> None:
        """Forget the previous run's typed text and held keys (a new run starts clean)."""
        self._field = _FieldState()

    @property
    def held_keys(self) -> tuple[str, ...]:
        """Keys a `press` holds down that no `release` let go of yet (canonical names)."""
        return tuple(self._field.held)

    @property
    def pending_text(self) -> str:
        """What was typed into the focused field since the last submit or focus change."""
        return self._field.text

    # --- what needs a person ------------------------------------------------------------

    def risk(self, action: A.Action, *, after_call_user: bool = False) -> str | None:
        """Why `action` needs confirmation at this level, or None if it may just run."""
        if self.level == "off" or isinstance(action, HARMLESS):
            return None
        if self.level == "strict":
            return f"strict safety confirms every action ({action.name})"
        if after_call_user:
            return f"{action.name} is the first action after the model handed control to you"
        if isinstance(action, A.Hotkey | A.Press):
            keys = tuple(canonical(k) for k in action.keys)
            why = self._chord_risk(action.name, "+".join(action.keys), keys)
            if why:
                return why
            if _submits(self._field.chord(keys)):
                return self._submit_risk(self._field.text + "\n")
        if isinstance(action, A.Type):
            typed = action.text + ("\n" if action.enter else "")
            modifiers = [k for k in self._field.held if is_modifier(k) and k != "shift"]
            if modifiers:  # with ctrl held, typing "w" presses ctrl+w
                for char in dict.fromkeys(typed.replace("\n", "")):
                    why = self._chord_risk("type", repr(char), (canonical(char),))
                    if why:
                        return why
                    if _submits(self._field.chord((canonical(char),))):
                        return self._submit_risk(self._field.text + "\n")
            return self._submit_risk(self._field.text + typed)
        return None

    def _chord_risk(self, what: str, written: str, keys: tuple[str, ...]) -> str | None:
        chord = self._field.chord(keys)
        pressed = to_platform(chord, self.platform)
        why = RISKY_CHORDS.get(pressed)
        if why is None:
            return None
        held = [k for k in self._field.held if k not in keys]
        text = f"{what} {written}"
        if held:
            text += f" with {'+'.join(held)} still held"
        mapped = "+".join(sorted(pressed))
        if pressed != frozenset(chord):
            text += f" (pressed as {mapped} on this computer)"
        return f"{text} {why}"

    def _submit_risk(self, text: str) -> str | None:
        """The risk of text whose every line but the last is submitted by a newline."""
        lines = re.split(r"\r\n|\r|\n", text)
        for line in lines[:-1]:
            why = self._command_risk(line)
            if why:
                return f'submitting "{line.strip()}" {why}'
        return None

    def _command_risk(self, line: str) -> str | None:
        if self._patterns is None:
            why = risky_command(line)
            return f"runs a risky command: {why}" if why else None
        for pattern in self._patterns:
            if pattern.search(line):
                return f"looks like a risky command (matches {pattern.pattern!r})"
        return None

    # --- what the allowed action did ------------------------------------------------------

    def _track(self, action: A.Action) -> None:
        field = self._field
        if isinstance(action, POINTER_FOCUS):
            field.click(action)
        elif isinstance(action, A.Type):
            if any(is_modifier(k) and k != "shift" for k in field.held):
                # chords, not text: ctrl+m / ctrl+j among them submitted the line
                if any(_submits(field.chord((canonical(c),))) for c in action.text if c.strip()):
                    field.text = ""
                return
            typed = field.text + action.text + ("\n" if action.enter else "")
            field.text = re.split(r"\r\n|\r|\n", typed)[-1]
        elif isinstance(action, A.Hotkey | A.Press):
            keys = tuple(canonical(k) for k in action.keys)
            chord = set(field.chord(keys))
            if _submits(chord):
                field.text = ""
            elif chord & FOCUS_KEYS:
                field.text, field.field_point = "", None
            elif chord == {"backspace"}:
                field.text = field.text[:-1]
            if isinstance(action, A.Press):
                field.held.extend(k for k in keys if k not in field.held)
        elif isinstance(action, A.Release):
            released = {canonical(k) for k in action.keys}
            field.held = [k for k in field.held if k not in released]

    def decide(self, action: A.Action, *, after_call_user: bool = False) -> Decision:
        """The verdict on `action`; an allowed action's effect is remembered for later ones."""
        decision = self._decide(action, after_call_user)
        if decision.allowed:
            self._track(action)
        return decision

    def _decide(self, action: A.Action, after_call_user: bool) -> Decision:
        why = self.risk(action, after_call_user=after_call_user)
        if why is None:
            return Decision("run", "allowed" if self.level != "off" else "safety is off")
        if self.confirm is None:
            return Decision(
                "refused",
                f"needs confirmation ({why}) but no one can confirm in this run "
                "(headless; pass --yes or lower --safety to allow it)",
            )
        try:
            approved = bool(self.confirm(action, why))
        except Exception as exc:  # a broken dialog must not turn into a silent yes
            log.exception("confirm callback failed")
            return Decision("refused", f"confirmation failed ({why}): {exc}")
        if approved:
            return Decision("confirmed", f"confirmed by the person: {why}")
        return Decision("refused", f"the person declined: {why}")
