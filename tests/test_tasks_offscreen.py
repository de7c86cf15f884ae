"""Practice tasks in real Qt widgets, offscreen: the expert solves them through synthetic
input, the window's state agrees with the pure model, and rendering is deterministic."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from agent import actions as A  # noqa: E402
from agent.tasks import check, generate, next_move, with_screen  # noqa: E402


def solve_offscreen(seed: int, screen=(1280, 800)):
    from app.offscreen_env import OffscreenTaskEnv

    task = generate(seed)
    env = OffscreenTaskEnv(task, screen)
    try:
        for n in range(10):
            move = next_move(task, env.state(), n)
            if isinstance(move.action, A.Finished):
                break
            result = env.execute(with_screen(move.action))
            assert result.ok, (seed, result.error)
        return task, env.state()
    finally:
        env.close()


def test_the_expert_solves_a_few_hundred_tasks_in_the_qt_window():
    skills = set()
    for seed in range(220):
        task, state = solve_offscreen(seed, (1920, 1080) if seed % 3 == 0 else (1280, 800))
        verdict = check(task, state)
        assert verdict.success, (seed, task.instruction, verdict.failures)
        skills.add(task.skill)
    assert len(skills) == 13


def test_qt_window_reports_what_the_pure_model_predicts():
    from agent.tasks import TaskModel
    from app.offscreen_env import OffscreenTaskEnv

    for seed in range(0, 120, 7):
        task = generate(seed)
        env = OffscreenTaskEnv(task)
        try:
            qt, pure = env.state(), TaskModel(task).state()
        finally:
            env.close()
        assert qt["values"] == pure["values"]
        assert qt["window"] == pure["window"]
        assert set(qt["widgets"]) == set(pure["widgets"])
        for wid, entry in pure["widgets"].items():
            got = qt["widgets"][wid]
            assert (got["kind"], got["label"], got["shown"]) == (
                entry["kind"], entry["label"], entry["shown"]), (seed, wid)
            if entry["kind"] in ("button", "field", "slider", "hover", "list", "menu"):
                assert (got["x"], got["y"]) == (entry["x"], entry["y"]), (seed, wid)


def test_wrong_actions_in_the_qt_window_fail_the_checker():
    from app.offscreen_env import OffscreenTaskEnv

    task = generate(5, difficulty=3, skill="click")
    env = OffscreenTaskEnv(task)
    try:
        state = env.state()
        other = next(wid for wid, e in state["widgets"].items()
                     if e["kind"] == "button" and wid not in task.goal.allowed)
        r = state["widgets"][other]
        point = A.Point(r["x"] + r["width"] / 2, r["y"] + r["height"] / 2)
        assert env.execute(A.Click(point=point, screen=point)).ok
        verdict = check(task, env.state())
    finally:
        env.close()
    assert not verdict.success and any("extra action" in f for f in verdict.failures)


def test_rendering_is_deterministic_and_the_title_is_the_instruction():
    from app.offscreen_env import OffscreenTaskEnv

    task = generate(14)
    first = OffscreenTaskEnv(task)
    try:
        a = first.observe()
        assert first.window.windowTitle() == task.instruction
    finally:
        first.close()
    second = OffscreenTaskEnv(task)
    try:
        b = second.observe()
    finally:
        second.close()
    assert a.image.size == (1280, 800) and a.frame.image_size == (1280, 800)
    assert a.image.tobytes() == b.image.tobytes()
    x, y = task.layout.position_on(1280, 800)
    assert a.image.getpixel((x - 5, y - 5)) != a.image.getpixel((x + 5, y + 5))  # window edge


def test_offscreen_env_refuses_what_it_cannot_run():
    from app.offscreen_env import OffscreenTaskEnv

    env = OffscreenTaskEnv(generate(1))
    try:
        assert not env.execute(A.Click(point=A.Point(1, 1))).ok  # no screen coordinates
        far = A.Point(5000, 5000)
        assert "outside the screen" in env.execute(A.Click(point=far, screen=far)).error
        assert not env.execute(A.PressHome()).ok
        assert "unknown key" in env.execute(A.Hotkey(keys=("ctrl", "nosuchkey"))).error
    finally:
        env.close()
