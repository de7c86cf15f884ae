"""An in-process practice screen: a task's Qt window driven by synthetic Qt events.

`OffscreenTaskEnv(task)` satisfies agent.protocols.Env without an X server (Qt's
offscreen platform works; so does any other): observe() renders the window into a
virtual monitor of `screen_size` at the task's seeded position, and execute() turns
each action (screen coordinates filled in) into the mouse, wheel and key events Qt
would receive from a real pointer and keyboard — a press on the widget under the
point, moves with the button held for a drag, wheel notches, key clicks to the focused
widget — so demonstrations and rollouts need no display and run in milliseconds.
"""

from __future__ import annotations

import os
import time

from PIL import Image
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtTest import QTest

from agent import actions as A
from agent.frames import Frame, Rect
from agent.protocols import ExecutionResult, Observation
from agent.tasks.layout import Task
from app.qimage import qimage_to_pil
from app.task_window import TaskWindow, prepare_application

Qt = QtCore.Qt
DESKTOP_COLOUR = (46, 84, 122)
WHEEL_NOTCH = 120  # angle delta of one wheel click
_BUTTONS = {A.Click: Qt.MouseButton.LeftButton, A.DoubleClick: Qt.MouseButton.LeftButton,
            A.TripleClick: Qt.MouseButton.LeftButton, A.RightClick: Qt.MouseButton.RightButton,
            A.MiddleClick: Qt.MouseButton.MiddleButton}
_MODIFIERS = {"ctrl": Qt.KeyboardModifier.ControlModifier,
              "shift": Qt.KeyboardModifier.ShiftModifier,
              "alt": Qt.KeyboardModifier.AltModifier,
              "cmd": Qt.KeyboardModifier.MetaModifier, "super": Qt.KeyboardModifier.MetaModifier}
_KEYS = {"enter": Qt.Key.Key_Return, "return": Qt.Key.Key_Return, "tab": Qt.Key.Key_Tab,
         "escape": Qt.Key.Key_Escape, "esc": Qt.Key.Key_Escape,
         "backspace": Qt.Key.Key_Backspace, "delete": Qt.Key.Key_Delete,
         "space": Qt.Key.Key_Space, "home": Qt.Key.Key_Home, "end": Qt.Key.Key_End,
         "left": Qt.Key.Key_Left, "right": Qt.Key.Key_Right, "up": Qt.Key.Key_Up,
         "down": Qt.Key.Key_Down, "pageup": Qt.Key.Key_PageUp,
         "pagedown": Qt.Key.Key_PageDown}


def application() -> QtWidgets.QApplication:
    """This process's QApplication; a new one on the offscreen platform, so rendering
    and input never touch a real screen."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        app = QtWidgets.QApplication(["deskpilot-offscreen"])
    prepare_application(app)
    return app


def render_window(window: QtWidgets.QWidget) -> Image.Image:
    """The window's pixels, as it paints itself (what a screenshot of it shows)."""
    return qimage_to_pil(window.grab().toImage())


class OffscreenTaskEnv:
    """One task's window on a virtual monitor; `state()` is the window's state."""

    def __init__(self, task: Task, screen_size: tuple[int, int] = (1280, 800)):
        self.app = application()
        self.task = task
        self.screen_size = tuple(screen_size)
        self.monitor = Rect(0, 0, *self.screen_size)
        self.origin = task.layout.position_on(*self.screen_size)
        self.window = TaskWindow(task)
        self.window.origin = lambda: self.origin
        self.window.show()
        self.window.activateWindow()
        self.app.processEvents()
        if not self.window.windowHandle().isExposed():  # immediate offscreen; a real screen
            QTest.qWaitForWindowExposed(self.window, 2000)  # may take a moment
        self._pointer = QtCore.QPoint(-1, -1)

    # --- Env ----------------------------------------------------------------------------

    def observe(self) -> Observation:
        self.app.processEvents()
        screen = Image.new("RGB", self.screen_size, DESKTOP_COLOUR)
        screen.paste(render_window(self.window), self.origin)
        return Observation(screen, Frame(self.monitor, screen.size), time.time())

    def execute(self, action: A.Action) -> ExecutionResult:
        try:
            details = self._execute(action)
        except _Unsupported as exc:
            return ExecutionResult(False, str(exc))
        self.app.processEvents()
        return ExecutionResult(True, details=details)

    def state(self) -> dict:
        self.app.processEvents()
        return self.window.state()

    def monitors(self) -> list[dict]:
        return [{**self.monitor.to_dict(), "scale": 1.0, "name": "offscreen"}]

    def close(self) -> None:
        # The pointer leaves first: Qt remembers the widget under it, and a stale one
        # would swallow the enter event of the next window's widget at that spot.
        QTest.mouseMove(self.window, QtCore.QPoint(-10, -10))
        self.app.processEvents()
        self.window.close()
        self.window.deleteLater()
        self.app.processEvents()

    # --- events -------------------------------------------------------------------------

    def _local(self, point: A.Point | None, what: str) -> QtCore.QPoint:
        if point is None:
            raise _Unsupported(f"{what} has no screen coordinates (frames.to_screen not applied)")
        if not self.monitor.contains(point.x, point.y):
            raise _Unsupported(f"{what} at ({point.x}, {point.y}) is outside the screen")
        return QtCore.QPoint(round(point.x) - self.origin[0], round(point.y) - self.origin[1])

    def _target(self, local: QtCore.QPoint) -> tuple[QtWidgets.QWidget | None, QtCore.QPoint]:
        """The widget a real press at `local` would reach, and the point in its frame."""
        if not self.window.rect().contains(local):
            return None, local  # the desktop around the window: nothing there to press
        child = self.window.childAt(local) or self.window
        return child, child.mapFrom(self.window, local)

    def _move(self, local: QtCore.QPoint) -> None:
        """The pointer moves there (enter and leave events, hover styles)."""
        if self.window.rect().contains(local):
            QTest.mouseMove(self.window, local)
        self._pointer = local

    def _execute(self, action: A.Action) -> dict:
        if A.is_mobile(action):
            raise _Unsupported(f"{action.name} is a mobile action; this screen is a desktop")
        if isinstance(action, A.PointerAction):
            local = self._local(action.screen, action.name)
            self._move(local)
            if isinstance(action, A.Hover):
                return {"at": [local.x(), local.y()]}
            target, pos = self._target(local)
            if target is not None:
                button = _BUTTONS[type(action)]
                if isinstance(action, A.DoubleClick):
                    # What a real double click delivers: press, release, press, double
                    # click, release (QTest's mouseDClick stops before the last release).
                    none = Qt.KeyboardModifier.NoModifier
                    QTest.mouseClick(target, button, none, pos)
                    QTest.mouseDClick(target, button, none, pos)
                    QTest.mouseRelease(target, button, none, pos)
                else:
                    clicks = 3 if isinstance(action, A.TripleClick) else 1
                    for _ in range(clicks):
                        QTest.mouseClick(target, button, Qt.KeyboardModifier.NoModifier, pos)
            return {"at": [local.x(), local.y()], "widget": target.objectName() if target else ""}
        if isinstance(action, A.Drag):
            start = self._local(action.screen_start, "drag start")
            end = self._local(action.screen_end, "drag end")
            self._move(start)
            target, pos = self._target(start)
            if target is not None:
                left = Qt.MouseButton.LeftButton
                QTest.mousePress(target, left, Qt.KeyboardModifier.NoModifier, pos)
                steps = 8  # a person's drag is a stream of moves, not a jump
                for i in range(1, steps + 1):
                    p = start + (end - start) * (i / steps)
                    QTest.mouseMove(target, target.mapFrom(self.window, p))
                QTest.mouseRelease(target, left, Qt.KeyboardModifier.NoModifier,
                                   target.mapFrom(self.window, end))
            self._pointer = end
            return {"from": [start.x(), start.y()], "to": [end.x(), end.y()]}
        if isinstance(action, A.Scroll):
            local = self._pointer
            if action.screen is not None:
                local = self._local(action.screen, "scroll")
                self._move(local)
            target, pos = self._target(local)
            if target is not None:
                # One event per notch, as a wheel delivers them (Qt caps what one event
                # may scroll at a page, so a single large delta would scroll less).
                n = WHEEL_NOTCH
                delta = {"up": (0, n), "down": (0, -n), "left": (n, 0),
                         "right": (-n, 0)}[action.direction]
                for _ in range(action.amount):
                    event = QtGui.QWheelEvent(
                        QtCore.QPointF(pos), QtCore.QPointF(target.mapToGlobal(pos)),
                        QtCore.QPoint(0, 0), QtCore.QPoint(*delta), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
                    QtWidgets.QApplication.sendEvent(target, event)
            return {"notches": action.amount}
        if isinstance(action, A.Type):
            focus = self._focus()
            if action.text:
                QTest.keyClicks(focus, action.text)
            if action.enter:
                QTest.keyClick(focus, Qt.Key.Key_Return)
            return {"chars": len(action.text), "enter": action.enter}
        if isinstance(action, A.Hotkey):
            self._hotkey(action.keys)
            return {"keys": list(action.keys)}
        if isinstance(action, A.Wait | A.Finished | A.CallUser):
            return {}
        raise _Unsupported(f"the offscreen practice screen cannot run {action.name}")

    def _focus(self) -> QtWidgets.QWidget:
        return QtWidgets.QApplication.focusWidget() or self.window.focusWidget() or self.window

    def _hotkey(self, keys: tuple[str, ...]) -> None:
        modifiers = Qt.KeyboardModifier.NoModifier
        key = None
        for name in (k.lower() for k in keys):
            if name in _MODIFIERS:
                modifiers |= _MODIFIERS[name]
            elif name in _KEYS:
                key = _KEYS[name]
            elif len(name) == 1:
                key = Qt.Key(ord(name.upper()))
            elif name.startswith("f") and name[1:].isdigit():
                key = Qt.Key(Qt.Key.Key_F1.value + int(name[1:]) - 1)
            else:
                raise _Unsupported(f"unknown key {name!r}")
        if key is None:
            raise _Unsupported(f"hotkey {'+'.join(keys)} has no key besides modifiers")
        QTest.keyClick(self._focus(), key, modifiers)


class _Unsupported(Exception):
    """An action this screen cannot run; reported as a failed ExecutionResult."""
