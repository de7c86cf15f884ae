"""Start the practice sandbox (`deskpilot sandbox`) as a real process for display tests.

Also turns widget rectangles from its state file into targets: centres in screen
pixels, and the model-space coordinates a UI-TARS-1.5 reply would use for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_state(path: Path, predicate: Callable[[dict], bool], timeout: float = 30.0) -> dict:
    """Poll the state file until `predicate(state)`; the last state is in the error.

    The deadline is generous on purpose: it only matters when something is wrong, and a
    loaded 2-core CI machine can take seconds to deliver an event to the sandbox."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = read_state(path)
        if state is not None and predicate(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"sandbox state never matched within {timeout}s; last state: {state}")


@contextlib.contextmanager
def sandbox(state_file: Path, *, env: dict | None = None) -> Iterator[dict]:
    """Run `deskpilot sandbox --state-file` on the current DISPLAY; yields its first state."""
    child_env = {**os.environ, "QT_QPA_PLATFORM": "xcb", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "sandbox", "--state-file", str(state_file)],
        cwd=ROOT, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        try:
            state = wait_state(state_file, lambda s: s["visible"], timeout=90)
        except AssertionError:
            proc.kill()
            raise AssertionError(
                f"sandbox did not start: {proc.communicate()[1].decode(errors='replace')}"
            ) from None
        yield state
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def centre(state: dict, widget: str) -> tuple[float, float]:
    r = state["widgets"][widget]
    return r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
