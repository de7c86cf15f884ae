"""Keep the app out of the agent's screenshots and out of its clicks — without ever
making the GUI thread and the worker thread wait for each other.

The capture runs on the worker thread but widgets may only be touched on the GUI thread,
so the worker *asks* the GUI thread (a queued signal carrying a request) to hide every
visible top-level window, move a window out of an action's way, or show them again. The
GUI thread serves a request whenever its event loop runs and never waits for the worker.
The worker waits for the answer only for a bounded time and stops waiting at once when
the hider is closed (the application is quitting). So there is no blocking wait across
the two threads in either direction, and quitting at any phase of a step cannot
deadlock: the earlier design (a BlockingQueuedConnection from the worker while the GUI
thread waited for the worker to finish) could.

While the screen settles after an action, the control strip (any window with the
`deskpilot_control` property) stays on screen so the person can press Stop; the
settle wait ignores the strip's pixels instead (`settling()` yields its rectangles).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QPoint, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QApplication, QWidget

log = logging.getLogger(__name__)

CLEARANCE = 24  # pixels kept between an action's point and our windows
CONTROL_PROPERTY = "deskpilot_control"  # windows that stay reachable while the screen settles

Rect = tuple[int, int, int, int]  # x, y, width, height in desktop logical pixels


def action_points(action) -> list[tuple[int, int]]:
    """The desktop points an action touches (after frames.to_screen)."""
    points = []
    for name in ("screen", "screen_start", "screen_end"):
        point = getattr(action, name, None)
        if point is not None:
            points.append(point.rounded())
    return points


def is_control(widget: QWidget) -> bool:
    return bool(widget.property(CONTROL_PROPERTY))


@dataclass
class _Request:
    """One thing the worker asks of the GUI thread; `done` is set once it was done."""

    kind: str  # "hide", "hide_all_but_controls", "show", "clear"
    points: list[tuple[int, int]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None


class WindowHider(QObject):
    """Create on the GUI thread; pass `hider.hide_windows` to DesktopEnv(hide_windows=...),
    `hider.settling` to DesktopEnv(settle_hiding=...) and `hider.keep_clear` as its
    before_action. answer_timeout_s bounds every wait of the worker for the GUI thread."""

    _request = Signal(object)

    def __init__(self, settle_s: float = 0.15, answer_timeout_s: float = 5.0,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settle_s = settle_s
        self.answer_timeout_s = answer_timeout_s
        self._hidden: list[QWidget] = []
        self._lock = threading.Lock()  # one capture at a time (worker side only)
        self._closed = threading.Event()
        # AutoConnection: queued when emitted from the worker, so the GUI thread runs it
        # from its event loop and the emitting thread does not wait.
        self._request.connect(self._serve)
        self.moved_count = 0  # how many times a window was moved out of an action's way
        self.hide_count = 0  # how many captures hid something (for tests and logs)
        self.unanswered_count = 0  # requests the GUI thread did not serve in time

    def hidden(self) -> list[QWidget]:
        return list(self._hidden)

    def close(self) -> None:
        """The application is quitting: no worker waits for the GUI thread from now on."""
        self._closed.set()

    # --- asking the GUI thread ------------------------------------------------------------

    def _ask(self, request: _Request) -> Any:
        """Have the GUI thread serve `request`; on it, serve it directly. Returns its result,
        or None when the GUI thread did not answer in time or the hider was closed."""
        if QThread.currentThread() is self.thread():
            self._serve(request)
            return request.result
        if self._closed.is_set():
            return None
        self._request.emit(request)
        deadline = time.monotonic() + self.answer_timeout_s
        while not request.done.wait(0.02):
            if self._closed.is_set() or time.monotonic() >= deadline:
                self.unanswered_count += 1
                log.warning("the window did not answer a %s request within %.1f s; going on",
                            request.kind, self.answer_timeout_s)
                return None
        return request.result

    @Slot(object)
    def _serve(self, request: _Request) -> None:
        """On the GUI thread."""
        try:
            if request.kind in ("hide", "hide_all_but_controls"):
                request.result = self._hide(keep_controls=request.kind != "hide")
            elif request.kind == "show":
                self._show()
            elif request.kind == "clear":
                self._move_away(request.points)
            QApplication.processEvents()
        finally:
            request.done.set()

    def _hide(self, *, keep_controls: bool) -> list[Rect]:
        kept: list[Rect] = []
        for widget in QApplication.topLevelWidgets():
            if not widget.isVisible() or widget.isMinimized():
                continue
            if widget.windowType() == Qt.WindowType.ToolTip:
                continue
            if keep_controls and is_control(widget):
                g = widget.frameGeometry()
                kept.append((g.x(), g.y(), g.width(), g.height()))
                continue
            widget.hide()
            self._hidden.append(widget)
        if self._hidden:
            self.hide_count += 1
        return kept

    def _show(self) -> None:
        for widget in self._hidden:
            # Re-showing must not take the keyboard focus from the app being driven.
            attr = Qt.WidgetAttribute.WA_ShowWithoutActivating
            had = widget.testAttribute(attr)
            widget.setAttribute(attr, True)
            widget.show()
            widget.setAttribute(attr, had)
        self._hidden = []

    # --- capture and settle ---------------------------------------------------------------

    @contextlib.contextmanager
    def hide_windows(self) -> Iterator[None]:
        """Every window of ours hidden for the block (a screenshot the model will see)."""
        with self._lock:
            self._ask(_Request("hide"))
            try:
                if self._hidden and self.settle_s > 0:
                    time.sleep(self.settle_s)  # let the window system repaint beneath us
                yield
            finally:
                self._show_again()

    @contextlib.contextmanager
    def settling(self) -> Iterator[list[Rect]]:
        """While the screen settles after an action: every window hidden but the control
        strip, which stays reachable; yields the rectangles the settle check must ignore."""
        with self._lock:
            kept = self._ask(_Request("hide_all_but_controls")) or []
            try:
                yield list(kept)
            finally:
                self._show_again()

    def _show_again(self) -> None:
        # Fire and forget: queued after the hide, so the GUI thread always runs it after.
        request = _Request("show")
        if QThread.currentThread() is self.thread():
            self._serve(request)
        else:
            self._request.emit(request)

    # --- keeping out of the way of actions ------------------------------------------------

    def keep_clear(self, action) -> None:
        """Move any visible window of ours that covers a point `action` will touch.

        Pass as DesktopEnv(before_action=...). The windows (the control strip above all)
        stay visible during actions so the person can press Stop, but a click, drag end
        or scroll aimed at the strip would otherwise press our own buttons. Points are
        desktop logical pixels, the same as Qt's global coordinates at Qt scale 1.
        """
        points = action_points(action)
        if points:
            self._ask(_Request("clear", points))

    def _move_away(self, points: list[tuple[int, int]]) -> None:
        for widget in QApplication.topLevelWidgets():
            if not widget.isVisible() or widget.isMinimized():
                continue
            area = widget.frameGeometry().adjusted(-CLEARANCE, -CLEARANCE, CLEARANCE, CLEARANCE)
            if not any(area.contains(QPoint(x, y)) for x, y in points):
                continue
            screen = widget.screen().availableGeometry()
            # the opposite vertical half of the screen, same horizontal position
            lower = area.center().y() > screen.center().y()
            y = screen.top() + CLEARANCE if lower else screen.bottom() - widget.height() - CLEARANCE
            widget.move(widget.x(), y)
            self.moved_count += 1
