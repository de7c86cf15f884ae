"""agent.trajectory.turns: the messages a step saw, and joins that render like the template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.trajectory import load_run
from agent.trajectory.turns import (
    chatml_boundary,
    join_turns,
    merge_same_role_turns,
    reply_steps,
    shown_reply,
    step_messages,
    template_boundary,
)
from tests.trajectory_runs import REPLIES, record_run

BAD = "Thought: hmm\nAction: clik(start_box='(1,2)')"


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Path:
    """history_n=2: from step 2 on, screenshots are dropped and replies follow each other;
    step 1 failed to parse, so its reply is followed by the feedback and a second user turn."""
    runs = tmp_path_factory.mktemp("runs")
    return record_run(runs, [REPLIES[0], BAD, *REPLIES[1:]], history_n=2)


@pytest.fixture(scope="module")
def render():
    """The chat template of the tiny test checkpoints' tokenizer (Qwen ChatML)."""
    import tempfile

    from vlm.synthetic import build_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        tok = build_tokenizer(Path(folder))
    return lambda messages: tok.apply_chat_template(messages, tokenize=False)


def _text(message: dict) -> str:
    return "".join(p.get("text", "<img>") for p in message["content"])


def test_step_messages_are_the_recorded_ones_with_absolute_images(long_run):
    run = load_run(long_run)
    raw = [json.loads(line) for line in (long_run / "steps.jsonl").read_text().splitlines()]
    for step, record in zip(run.steps, raw):
        messages = step_messages(run, step)
        assert [m["role"] for m in messages] == [m["role"] for m in record["messages"]] + [
            "assistant"]
        assert messages[-1]["content"] == [{"type": "text", "text": record["reply"]}]
        for ours, theirs in zip(messages, record["messages"]):
            for part, original in zip(ours["content"], theirs["content"]):
                if part["type"] == "image":
                    path = Path(part["image"])
                    assert path.is_absolute() and path.is_file()
                    assert path.name == original["image"]
                else:
                    assert part == {"type": "text", "text": original["text"]}
    # The dropped screenshots leave replies back to back, as the model saw them.
    last = step_messages(run, run.steps[-1])
    roles = [m["role"] for m in last]
    assert ["assistant", "assistant"] == roles[2:4]
    assert sum(p["type"] == "image" for m in last for p in m["content"]) == 2


def test_reply_steps_match_replies_by_position(long_run):
    run = load_run(long_run)
    step = run.steps[-1]
    sources = reply_steps(run, step)
    assert [s["index"] for s in sources] == [s["index"] for s in run.steps[:-1]]
    assert sources[1]["parse_error"]


def test_a_step_without_a_reply_is_refused(long_run):
    run = load_run(long_run)
    step = dict(run.steps[0], reply="")
    with pytest.raises(ValueError, match="no recorded reply"):
        step_messages(run, step)


def test_template_boundary_is_chatml_for_the_tiny_template(render):
    boundary = template_boundary(render)
    for first in ("system", "user", "assistant"):
        for second in ("user", "assistant"):
            assert boundary(first, second) == chatml_boundary(first, second)


def test_merged_turns_render_exactly_like_the_original(long_run, render):
    run = load_run(long_run)
    for step in run.steps:
        messages = step_messages(run, step)
        merged = merge_same_role_turns(messages, template_boundary(render))
        roles = [m["role"] for m in merged]
        assert all(a != b for a, b in zip(roles, roles[1:]))
        assert render(merged) == render(messages)
        assert render(merge_same_role_turns(messages)) == render(messages)
    # Nothing glued: each reply still ends where the template ends a turn.
    last = merge_same_role_turns(step_messages(run, run.steps[-1]))
    glued = _text(last[2])
    assert "<|box_end|>')<|im_end|>\n<|im_start|>assistant\nThought: hmm" in glued


def test_join_turns_renders_like_the_original(long_run, render):
    run = load_run(long_run)
    messages = step_messages(run, run.steps[-1])
    context, rest = messages[1:-1], messages[-1:]
    joined = [messages[0], join_turns(context, template_boundary(render)), *rest]
    assert joined[1]["role"] == "user"
    assert render(joined) == render(messages)


def test_merging_turns_that_disagree_on_loss_is_refused():
    messages = [
        {"role": "assistant", "content": "a", "loss": True},
        {"role": "assistant", "content": "b", "loss": False},
    ]
    with pytest.raises(ValueError, match="differ in"):
        merge_same_role_turns(messages)
    same = [dict(m, loss=True) for m in messages]
    (merged,) = merge_same_role_turns(same, "|")
    assert merged["loss"] is True and _text(merged) == "a|b"


def test_shown_reply_is_what_the_dialect_puts_in_later_prompts(long_run):
    from tests.trajectory_runs import dialect

    run = load_run(long_run)
    last = run.steps[-1]
    recorded = [m for m in last["messages"] if m["role"] == "assistant"]
    for source, message in zip(reply_steps(run, last), recorded):
        assert shown_reply(dialect(), source["reply"]) == message["content"][0]["text"]
    assert "<|box_start|>(100,200)<|box_end|>" in shown_reply(dialect(), REPLIES[0])
    plain = "Thought: ok\nAction: click(point='<point>1 2</point>')"
    assert shown_reply(dialect(name="qwen3-vl"), plain) == plain
