"""DesktopEnv: the real screen behind the agent's Env protocol.

observe() captures the chosen monitor; execute() runs one action on the monitor of the
last observation (the one the model looked at) and then waits for the screen to settle
so the next screenshot shows the action's effect, not a half-drawn frame.

The monitor is chosen once, at the first observe(), and kept for the whole run (one
DesktopEnv is made per run): with `auto` following the pointer, choosing per step would
make the agent jump screens whenever its own click or drag ends on another monitor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from agent import actions as A
from agent.desktop.capture import Capturer, HideWindows, MonitorChoice
from agent.desktop.errors import DisplayError
from agent.desktop.executor import Executor
from agent.desktop.monitors import Monitor, require_display
from agent.desktop.settle import wait_for_settle
from agent.frames import Frame, Rect
from agent.protocols import ExecutionResult, Observation

if TYPE_CHECKING:
    from PIL.Image import Image

SettleHiding = Callable[[], AbstractContextManager]


def blank_regions(image: Image, monitor: Rect, rects: list[tuple[int, int, int, int]]) -> Image:
    """`image` of `monitor` with the desktop rectangles painted black (in place).

    The app's control strip stays visible while the screen settles; its own changes
    (a status line) must not count as the screen still changing."""
    if not rects:
        return image
    from PIL import ImageDraw

    sx, sy = image.width / monitor.width, image.height / monitor.height
    draw = ImageDraw.Draw(image)
    for x, y, w, h in rects:
        left, top = (x - monitor.left) * sx, (y - monitor.top) * sy
        draw.rectangle([left, top, left + w * sx, top + h * sy], fill=(0, 0, 0))
    return image


# Actions after which nothing on screen is expected to change because of us.
NO_SETTLE = (A.Wait, A.Finished, A.CallUser, A.Press)


class DesktopEnv:
    """The live desktop. Raises DisplayError at construction when there is no display."""

    def __init__(
        self,
        monitor: MonitorChoice = "auto",
        settle_timeout: float = 3.0,
        settle_threshold: float = 0.005,
        hide_windows: HideWindows | None = None,
        *,
        executor: Executor | None = None,
        before_action: Callable[[A.Action], None] | None = None,
        settle_hiding: SettleHiding | None = None,
    ):
        require_display()
        if settle_timeout < 0 or not 0 <= settle_threshold <= 1:
            raise ValueError("settle_timeout must be >= 0 and settle_threshold in [0, 1]")
        self.capturer = Capturer(monitor, hide_windows)
        self.executor = executor or Executor()
        self.settle_timeout = settle_timeout
        self.settle_threshold = settle_threshold
        # Called with each (screen-mapped) action just before it runs: the app uses it to
        # move its own windows out of the way, so a click never lands on deskpilot itself.
        self.before_action = before_action
        # Around the settle wait after an action: hides the app's windows but keeps its
        # controls (the Stop strip) reachable, yielding their desktop rectangles
        # (x, y, width, height), which the settle check ignores. Default: hide everything.
        self.settle_hiding = settle_hiding
        self._monitor: Monitor | None = None

    def monitors(self) -> list[Monitor]:
        return self.capturer.monitors()

    def observe(self) -> Observation:
        # A new step: forget an interrupt from an earlier run. A stop that is still in
        # force lives in the Agent, which checks it before every action anyway.
        self.executor.cancel.clear()
        now = time.time()
        if self._monitor is None:
            self._monitor = self.capturer.choose()
        monitor = self._monitor
        image = self.capturer.grab(monitor)
        return Observation(image=image, frame=Frame(monitor.rect, image.size), captured_at=now)

    def execute(self, action: A.Action) -> ExecutionResult:
        monitor = self._monitor or self.capturer.choose()
        if self.before_action is not None:
            self.before_action(action)
        result = self.executor.execute(action, monitor.rect)
        if result.ok and not isinstance(action, NO_SETTLE) and self.settle_timeout > 0:
            try:
                # Hidden once for the whole wait: hiding per frame would make the app's
                # windows flicker, and their own changes must not keep the screen "busy".
                hiding = self.settle_hiding() if self.settle_hiding else self.capturer.hiding()
                with hiding as kept:
                    kept = list(kept or [])
                    settle = wait_for_settle(
                        lambda: blank_regions(
                            self.capturer.grab(monitor, check_black=False, hide=False),
                            monitor.rect, kept,
                        ),
                        timeout=self.settle_timeout,
                        threshold=self.settle_threshold,
                        stop=self.executor.cancel.is_set,  # Stop ends the wait at once
                    )
            except DisplayError as exc:
                return ExecutionResult(ok=False, error=str(exc), details=result.details)
            result.details.update(settle_s=round(settle.elapsed, 3), settled=settle.settled)
        return result

    def interrupt(self) -> None:
        """Cut a running `wait` short (the kill switch calls this alongside Agent.stop).

        Waits return at once until the next observe()."""
        self.executor.cancel.set()

    def release_held_keys(self) -> list[str]:
        """Let go of every key a `press` still holds (the loop calls this when a run ends)."""
        return self.executor.release_held()

    def close(self) -> None:
        try:
            self.release_held_keys()
        finally:
            self.capturer.close()
