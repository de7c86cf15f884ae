"""Where `deskpilot eval tasks` shows a practice task: the live desktop or offscreen.

Both satisfy agent.eval.TaskScreen (an `env`, `read_state()`, `close()`):

- DesktopTaskScreen starts `deskpilot sandbox --task-seed N --state-file PATH` as its
  own process on the current display and acts on it through DesktopEnv — the real
  capture, pyautogui executor and settling, exactly what a person's run uses.
- OffscreenTaskScreen renders the task in this process (app/offscreen_env.py), for fast
  evaluation and data generation without a display.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.tasks import Task

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0  # seconds for the sandbox process to show its window (a loaded box)


class SandboxStartError(RuntimeError):
    """The practice window did not come up."""


def read_state_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class DesktopTaskScreen:
    def __init__(self, task: Task, *, monitor="auto", settle_timeout: float = 3.0,
                 settle_threshold: float = 0.005, difficulty: int | None = None):
        from agent.desktop import DesktopEnv

        self.task = task
        self._dir = tempfile.TemporaryDirectory(prefix="deskpilot-task-")
        self.state_file = Path(self._dir.name) / "state.json"
        child_env = dict(os.environ)
        if child_env.get("QT_QPA_PLATFORM", "") in ("", "offscreen", "minimal"):
            # The window must be on the screen the agent captures.
            child_env["QT_QPA_PLATFORM"] = "wayland" if (
                child_env.get("WAYLAND_DISPLAY") and not child_env.get("DISPLAY")) else "xcb"
        command = [sys.executable, "-m", "app.cli", "sandbox", "--task-seed", str(task.seed),
                   "--state-file", str(self.state_file)]
        if difficulty is not None:  # the same task as the caller's, not the seed's default
            command += ["--difficulty", str(difficulty)]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            self._wait_visible()
            self.env = DesktopEnv(monitor=monitor, settle_timeout=settle_timeout,
                                  settle_threshold=settle_threshold)
        except BaseException:
            self.close()
            raise

    def _wait_visible(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            state = read_state_file(self.state_file)
            if state and state.get("visible") and state.get("task_seed") == self.task.seed:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.proc.kill()
        error = self.proc.communicate()[1].decode(errors="replace").strip()
        raise SandboxStartError(f"the practice window for task {self.task.seed} did not "
                                f"appear: {error or 'no error output'}")

    def read_state(self, quiet_s: float = 0.1, timeout: float = 1.5) -> dict | None:
        """The state once the file has stayed the same for `quiet_s`: the window writes
        it from its own process, and acting on a state one change behind (a checkbox
        not yet shown ticked) would make the expert undo its own step."""
        deadline = time.monotonic() + timeout
        last = read_state_file(self.state_file)
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            current = read_state_file(self.state_file)
            if current is not None and current == last:
                return current
            last = current
        return last

    def close(self) -> None:
        env = getattr(self, "env", None)
        if env is not None and hasattr(env, "close"):
            env.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self._dir.cleanup()


class OffscreenTaskScreen:
    def __init__(self, task: Task, screen_size: tuple[int, int] = (1280, 800)):
        from app.offscreen_env import OffscreenTaskEnv

        self.env = self._offscreen = OffscreenTaskEnv(task, screen_size)

    def read_state(self) -> dict | None:
        return self._offscreen.state()

    def close(self) -> None:
        self._offscreen.close()
