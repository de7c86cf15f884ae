"""Practice tasks: a seeded suite of verifiable desktop tasks and a scripted expert.

    task = generate(seed)                 # layout, instruction, goal (agent/tasks/generator.py)
    verdict = check(task, state)          # over the practice window's state (checker.py)
    move = next_move(task, state)         # the expert's next action (expert.py)
    TaskModel(task)                       # the pure model of the window (simulate.py)

Pure Python: no Qt, no torch. app/task_window.py renders a task with Qt.
"""

from __future__ import annotations

from agent.tasks.checker import Verdict, check, initial_values
from agent.tasks.expert import ExpertPolicy, Move, dense_labels, next_move, with_screen
from agent.tasks.generator import DIFFICULTIES, MULTI_SKILLS, SINGLE_SKILLS, SKILLS, generate
from agent.tasks.layout import Box, Goal, Layout, Task, Widget
from agent.tasks.simulate import TaskModel

__all__ = [
    "DIFFICULTIES",
    "MULTI_SKILLS",
    "SINGLE_SKILLS",
    "SKILLS",
    "Box",
    "ExpertPolicy",
    "Goal",
    "Layout",
    "Move",
    "Task",
    "TaskModel",
    "Verdict",
    "Widget",
    "check",
    "dense_labels",
    "generate",
    "initial_values",
    "next_move",
    "parse_seeds",
    "with_screen",
]


def parse_seeds(text: str) -> list[int]:
    """'0-49' or '3,7,10-12' -> the seeds, in order; ValueError says what is wrong."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise ValueError(f"seeds must look like 0-49 or 3,7,10-12, got {text!r}")
        a, b = int(low), int(high) if dash else int(low)
        if b < a:
            raise ValueError(f"seed range {part!r} runs backwards")
        seeds.extend(range(a, b + 1))
    return seeds
