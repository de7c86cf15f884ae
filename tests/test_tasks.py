"""The practice task suite, pure: generator, checker, expert and the pure window model."""

from __future__ import annotations

import dataclasses

import pytest

from agent import actions as A
from agent import frames as F
from agent.tasks import (
    DIFFICULTIES,
    Task,
    TaskModel,
    check,
    dense_labels,
    generate,
    next_move,
    parse_seeds,
    with_screen,
)


def solve(task: Task, screen=(1280, 800), limit: int = 12) -> tuple[TaskModel, int]:
    """Run the expert on the pure model; returns the model and the number of actions."""
    model = TaskModel(task, screen)
    for n in range(limit):
        move = next_move(task, model.state(), n)
        if isinstance(move.action, A.Finished):
            return model, n
        model.execute(with_screen(move.action))
    raise AssertionError(f"seed {task.seed}: the expert did not finish in {limit} actions")


def test_every_task_of_thousands_of_seeds_is_solved_by_the_expert():
    kinds = set()
    for seed in range(2500):
        task = generate(seed)
        model, actions = solve(task, screen=(1920, 1080) if seed % 2 else (1280, 800))
        verdict = check(task, model.state())
        assert verdict.success, (seed, task.instruction, verdict.failures)
        if task.kind == "single":
            assert actions == 1, (seed, task.skill)
        else:
            assert 2 <= actions <= 5, (seed, task.skill, actions)
        kinds.add(task.skill)
    assert len(kinds) == 13


def test_generation_is_reproducible_and_round_trips():
    a, b = generate(123), generate(123)
    assert a == b
    assert Task.from_dict(a.to_dict()) == a
    assert generate(124) != a
    instructions = {generate(s).instruction for s in range(200)}
    assert len(instructions) > 150  # varied phrasings and labels


def test_difficulty_knob_adds_widgets_shrinks_labels_and_adds_look_alikes():
    def stats(level):
        tasks = [generate(s, difficulty=level, skill="click") for s in range(60)]
        widgets = sum(len(t.layout.widgets) for t in tasks) / len(tasks)
        font = sum(t.layout.font_px for t in tasks) / len(tasks)
        return widgets, font

    easy, hard = stats(0), stats(3)
    assert hard[0] > easy[0] + 4 and hard[1] < easy[1] - 4
    hard_task = generate(5, difficulty=3, skill="click")
    target = hard_task.layout.widget(hard_task.goal.events[0]["widget"]).label
    buttons = [w.label for w in hard_task.layout.widgets if w.kind == "button"]
    assert sum(target.lower()[:3] in b.lower() for b in buttons) >= 2  # look-alikes
    assert set(DIFFICULTIES) == {0, 1, 2, 3}


def test_windows_fit_the_screen_away_from_corners_and_move_with_the_seed():
    corners = set()
    for seed in range(300):
        layout = generate(seed).layout
        x, y = layout.position_on(1280, 800)
        assert x >= 24 and y >= 24
        assert x + layout.width <= 1280 - 24 and y + layout.height <= 800 - 24
        corners.add((x > (1280 - layout.width) / 2, y > (800 - layout.height) / 2))
    assert len(corners) == 4


def _other_button(task: Task) -> str:
    return next(w.id for w in task.layout.widgets
                if w.kind == "button" and w.id not in task.goal.allowed and w.parent is None)


def _click(model: TaskModel, widget_id: str) -> None:
    r = model.state()["widgets"][widget_id]
    point = A.Point(r["x"] + r["width"] / 2, r["y"] + r["height"] / 2)
    model.execute(A.Click(point=point, screen=point))


def test_checker_fails_on_the_wrong_widget():
    task = generate(5, difficulty=3, skill="click")
    model = TaskModel(task)
    _click(model, _other_button(task))
    verdict = check(task, model.state())
    assert not verdict.success
    assert any("never got a click" in f for f in verdict.failures)
    assert any("extra action" in f for f in verdict.failures)


def test_checker_fails_on_wrong_text():
    task = generate(11, skill="type_submit")
    field = next(iter(task.goal.values))
    model, _ = solve(task)
    assert check(task, model.state()).success
    wrong = TaskModel(task)
    _click(wrong, field)
    wrong.execute(A.Hotkey(keys=("ctrl", "a")))
    wrong.execute(A.Type(text=task.goal.values[field] + "x"))
    _click(wrong, task.goal.events[0]["widget"])
    verdict = check(task, wrong.state())
    assert not verdict.success and any("expected" in f for f in verdict.failures)


def test_checker_fails_on_an_extra_harmful_action_after_success():
    for seed in range(40):
        task = generate(seed, difficulty=2)
        if task.skill in ("dialog_tick_ok", "menu"):
            continue
        model, _ = solve(task)
        assert check(task, model.state()).success
        _click(model, _other_button(task))
        verdict = check(task, model.state())
        assert not verdict.success and any("extra action" in f for f in verdict.failures), seed


def test_checker_fails_when_submit_comes_before_the_typing():
    task = generate(11, skill="type_submit")
    field, submit = next(iter(task.goal.values)), task.goal.events[0]["widget"]
    model = TaskModel(task)
    _click(model, submit)
    _click(model, field)
    model.execute(A.Hotkey(keys=("ctrl", "a")))
    model.execute(A.Type(text=task.goal.values[field]))
    verdict = check(task, model.state())
    assert not verdict.success and any("not after" in f for f in verdict.failures)


def test_cancel_in_the_dialog_is_harmful():
    task = generate(3, skill="dialog_tick_ok")
    cancel = next(w.id for w in task.layout.widgets
                  if w.parent == "d0" and w.kind == "button" and w.id not in task.goal.allowed)
    model = TaskModel(task)
    _click(model, cancel)
    assert not check(task, model.state()).success


@pytest.mark.parametrize("dialect_name", ["uitars-1.5", "uitars-1.0", "qwen3-vl"])
def test_expert_replies_parse_back_onto_the_widget_in_every_dialect(dialect_name):
    from agent.dialects import get_dialect
    from agent.tasks.expert import to_model

    dialect = get_dialect(dialect_name)
    frame = F.Frame(F.Rect(0, 0, 1920, 1080), (1920, 1080))
    frame = frame.with_model(dialect.model_size(1920, 1080), dialect.space)
    for seed in range(60):
        task = generate(seed)
        model = TaskModel(task, (1920, 1080))
        move = next_move(task, model.state())
        reply = dialect.format_reply(move.thought, [to_model(frame, move.action)])
        parsed = dialect.parse(reply, frame.model_size)
        assert parsed.thought == move.thought and parsed.thought.endswith(".")
        (action,) = [F.to_screen(frame, a) for a in parsed.actions]
        assert type(action) is type(move.action)
        if isinstance(action, A.PointerAction):
            assert abs(action.screen.x - move.action.point.x) <= 2
            assert abs(action.screen.y - move.action.point.y) <= 2
            hit = model.hit(action.screen.x - model.origin[0], action.screen.y - model.origin[1])
            assert hit is not None


def test_dense_labels_cover_every_shown_widget():
    task = generate(8, skill="scroll_select")
    state = TaskModel(task).state()
    labels = dense_labels(state, origin=(0, 0))
    kinds = {item["kind"] for item in labels}
    assert {"list", "list_item"} <= kinds
    target_list = next(iter(task.goal.values))
    entry = next(item for item in labels if item["id"] == target_list)
    r = state["widgets"][target_list]
    assert entry["box"] == [r["x"], r["y"], r["x"] + r["width"], r["y"] + r["height"]]
    assert not any(item["kind"] == "menu_item" for item in labels)  # closed menus are hidden


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,7,10-11") == [3, 7, 10, 11]
    for bad in ("", "a-b", "5-2", "-3"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_bad_seed_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        generate(-1)
    with pytest.raises(ValueError, match="unknown skill"):
        generate(1, skill="juggle")
    assert dataclasses.is_dataclass(generate(0))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_every_difficulty_is_solvable(level):
    for seed in range(250):
        task = generate(seed, difficulty=level)
        assert task.difficulty == level
        model, _ = solve(task)
        assert check(task, model.state()).success, (level, seed, task.instruction)
