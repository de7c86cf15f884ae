"""The welcome screen's "Try a practice task": a random practice task, ready to Run.

It opens the task's window (`deskpilot sandbox --task-seed N`, its own process, like the
practice sandbox) and types its instruction into the task box, so pressing Run lets the
selected model do it; the run is recorded like any other.
"""

from __future__ import annotations

import random

from PySide6.QtCore import QProcess

from agent.tasks import Task, generate
from app.demo_actions import cli_command

SEED_RANGE = 100_000


def open_practice_task(host, seed: int | None = None) -> tuple[Task, int | None]:
    """Show practice task `seed` (random when None) for `host` (the app's controller);
    returns the task and the window's process id (None if it could not start)."""
    task = generate(random.randrange(SEED_RANGE) if seed is None else seed)
    program, args = cli_command("sandbox", "--task-seed", str(task.seed))
    ok, pid = QProcess.startDetached(program, args)
    window = host.window
    if not ok:
        host.show_error(f"Could not open practice task {task.seed} "
                        f"(`deskpilot sandbox --task-seed {task.seed}`).")
        return task, None
    window.task_panel.input.setPlainText(task.instruction)
    window.show_welcome(False)
    window.statusBar().showMessage(
        f"Practice task {task.seed} is open: press Run to let the selected model do it", 10000)
    return task, int(pid)
