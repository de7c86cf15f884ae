"""Parser fidelity on realistic UI-TARS replies (issue 14): the classes a differential test
against the official `ui-tars` parser found us wrong on, each with replies shaped like
what UI-TARS-1.5-7B writes."""

from __future__ import annotations

import pytest

from agent import actions as A
from agent.actions import ParseError
from agent.dialects import get_dialect

SIZE = (1932, 1092)
V15 = get_dialect("uitars-1.5")


def parse(text: str) -> A.Response:
    return V15.parse(text, SIZE)


# --- the action is the last `Action:` that starts a line --------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        # the model quotes its previous action with an unbalanced quote
        "Thought: My previous Action: type(content='it's done was not accepted, the field is "
        "still empty. I'll click the field first.\nAction: click(start_box='(100,200)')",
        # the previous action quoted verbatim with a doubled quote that never closes
        "Thought: Last step I wrote Action: type(content='rm -rf ~/'' and nothing happened."
        "\nAction: click(start_box='(100,200)')",
        # the previous action quoted on a line of its own
        "Thought: The last step was\nAction: type(content='hello world')\nand it worked, so "
        "now I submit.\nAction: click(start_box='(100,200)')",
        # an inline quote of an action inside the real action line's thought
        "Thought: Unlike Action: hotkey(key='ctrl w'), which would close the tab, I click.\n"
        "Action: click(start_box='(100,200)')",
    ],
)
def test_an_action_quoted_in_the_thought_is_never_executed(reply):
    response = parse(reply)
    assert response.actions == (A.Click(point=A.Point(100, 200)),)
    assert "Action:" in response.thought  # the quoted text stayed in the thought


def test_thought_text_after_an_unclosed_quote_is_not_typed():
    reply = (
        "Thought: I typed Action: type(content='Dear team, and it was cut off.\n"
        "Action: hotkey(key='enter')"
    )
    response = parse(reply)
    assert response.actions == (A.Hotkey(keys=("enter",)),)


def test_a_mid_line_marker_still_works_when_no_line_starts_with_one():
    response = parse("Thought: The dialog is open. Action: click(start_box='(5,6)')")
    assert response.actions == (A.Click(point=A.Point(5, 6)),)
    assert response.thought == "The dialog is open."


def test_indented_marker_line_counts_as_the_start_of_a_line():
    response = parse("Thought: ok\n   Action: wait()")
    assert response.actions == (A.Wait(),)


# --- type(content=...) with unescaped quotes ---------------------------------------------


@pytest.mark.parametrize(
    ("reply", "typed"),
    [
        (
            "Thought: I'll write the call into the editor.\n"
            "Action: type(content='plt.plot(x, y, label='data')')",
            "plt.plot(x, y, label='data')",
        ),
        (
            "Thought: Add the logging setup.\n"
            "Action: type(content='logging.basicConfig(level='INFO', format='%(message)s')')",
            "logging.basicConfig(level='INFO', format='%(message)s')",
        ),
        (
            "Thought: Type the two print statements.\n"
            "Action: type(content='print('hello')\nprint('bye')')",
            "print('hello')\nprint('bye')",
        ),
        (
            "Thought: Define the function, a blank line, then call it.\n"
            "Action: type(content='def f():\n    print('hi')\n\nf()')",
            "def f():\n    print('hi')\n\nf()",
        ),
        (
            'Thought: SQL in the query box.\n'
            "Action: type(content=\"SELECT * FROM t WHERE name=\"bob\" AND x=f(\"a\")\")",
            'SELECT * FROM t WHERE name="bob" AND x=f("a")',
        ),
    ],
)
def test_typed_code_with_unescaped_quotes_is_the_whole_content(reply, typed):
    response = parse(reply)
    assert response.actions == (A.Type(text=typed),)


def test_typed_code_ending_in_newline_still_submits():
    response = parse("Thought: run it\nAction: type(content='os.getcwd('x')\n')")
    assert response.actions == (A.Type(text="os.getcwd('x')", enter=True),)


def test_typed_code_then_another_action_keeps_both():
    response = parse(
        "Thought: type then save\n"
        "Action: type(content='f(a='1')')\n\nhotkey(key='ctrl s')"
    )
    assert response.actions == (A.Type(text="f(a='1')"), A.Hotkey(keys=("ctrl", "s")))


def test_ordinary_replies_still_split_into_their_actions():
    response = parse("Thought: t\nAction: type(content='abc')\n\ntype(content='def')")
    assert response.actions == (A.Type(text="abc"), A.Type(text="def"))


def test_escaped_quotes_are_still_escapes():
    response = parse("Thought: t\nAction: type(content='it\\'s f(\\'a\\')')")
    assert response.actions == (A.Type(text="it's f('a')"),)


def test_finished_content_with_quotes_is_read_whole():
    response = parse("Thought: done\nAction: finished(content='The answer is f('x') = 3')")
    assert response.actions == (A.Finished(content="The answer is f('x') = 3"),)


@pytest.mark.parametrize(
    "reply",
    [
        "Action: type(content='a', content='b')",
        "Action: type(content='abc') trailing words",
        "Action: type(content='abc')\nclick(start_box='(1,2)')",
    ],
)
def test_free_text_calls_still_reject_what_no_reading_explains(reply):
    with pytest.raises(ParseError):
        parse(reply)


# --- the UI-TARS repository's own example: a box missing its ')' --------------------------


def test_box_missing_its_closing_parenthesis_inside_the_quotes_is_repaired():
    reply = (
        "Thought: Click on the search bar at the top of the screen\n"
        "Action: left_single(start_box='(573,322')"
    )
    response = parse(reply)
    assert response.actions == (A.Click(point=A.Point(573, 322)),)
    assert response.thought == "Click on the search bar at the top of the screen"


def test_box_token_point_missing_its_parenthesis_is_repaired():
    response = parse("Action: click(start_box='<|box_start|>(10,20<|box_end|>')")
    assert response.actions == (A.Click(point=A.Point(10, 20)),)


def test_a_repaired_box_is_still_checked_against_the_screen():
    with pytest.raises(ParseError, match="outside"):
        parse("Action: click(start_box='(5000,20')")


# --- Reflection / Action_Summary and <think> ----------------------------------------------


def test_reflection_reply_thought_is_the_action_summary():
    reply = (
        "Reflection: The previous click opened the wrong menu; the File menu is what I "
        "need.\nAction_Summary: Click the File menu in the top-left corner.\n"
        "Action: click(start_box='(20,10)')"
    )
    response = parse(reply)
    assert response.thought == "Click the File menu in the top-left corner."
    assert response.reflection.startswith("The previous click opened the wrong menu")
    assert response.actions == (A.Click(point=A.Point(20, 10)),)


def test_action_summary_only_reply():
    response = parse("Action_Summary: Scroll down to see more.\nAction: scroll(direction='down')")
    assert response.thought == "Scroll down to see more."
    assert response.actions == (A.Scroll("down"),)


def test_think_block_is_kept_apart_and_never_executed():
    reply = (
        "<think>The user wants dark mode. I could type(content='dark') in search, but the "
        "toggle is visible.\nAction: type(content='dark')</think>\n"
        "Thought: Click the dark-mode toggle.\nAction: click(start_box='(300,400)')"
    )
    response = parse(reply)
    assert response.thought == "Click the dark-mode toggle."
    assert response.thinking.startswith("The user wants dark mode.")
    assert "Action: type" in response.thinking
    assert response.actions == (A.Click(point=A.Point(300, 400)),)


def test_thinking_is_recorded_in_the_step(tmp_path):
    from agent.loop import Agent
    from agent.memenv import MemoryEnv
    from agent.policies import ScriptPolicy
    from agent.trajectory import Recorder, load_run

    reply = "<think>look first</think>\nThought: done\nAction: finished(content='ok')"
    agent = Agent(ScriptPolicy([reply]), MemoryEnv(), V15, max_steps=1)
    recorder = Recorder(
        tmp_path, task="t", dialect=V15.name, model="script", backend="script", monitors=[]
    )
    for step in agent.run("t"):
        recorder.write_step(step)
    recorder.finish(agent.outcome or "error", agent.final_message)
    run = load_run(recorder.run_dir)
    assert run.steps[0]["thinking"] == "look first"
    assert run.steps[0]["thought"] == "done"


def test_two_actions_on_consecutive_lines_are_not_read_as_one_typed_text():
    with pytest.raises(ParseError, match="blank line"):
        parse("Thought: t\nAction: type(content='hello')\nhotkey(key='enter')")
