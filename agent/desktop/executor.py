"""Execute actions with pyautogui (imported lazily), on the monitor they were aimed at.

Actions arrive with their `screen` coordinates filled in (virtual-desktop logical
pixels, already clamped by frames.to_screen). They are clamped to the monitor again
here, as defence in depth against an action built by hand or replayed from a file,
then converted to the pixels pyautogui takes (times DESKPILOT_SCALE, see monitors.py).
pyautogui.FAILSAFE stays on: a person slamming the pointer into a corner raises.

Keys a `press` holds down are remembered until their `release`: a later hotkey leaves
them down (so held ctrl + hotkey w is ctrl+w, as the safety policy judged it), and
`release_held()` lets go of them when a run ends, however it ends — the loop calls it,
DesktopEnv.close() calls it, and an atexit hook calls it if the process exits first.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref

from agent import actions as A
from agent.desktop.clipboard import Clipboard, ClipboardError
from agent.desktop.monitors import desktop_scale
from agent.desktop.pyautogui_loader import load_pyautogui
from agent.frames import Rect
from agent.keys import map_key, map_keys
from agent.protocols import ExecutionResult

log = logging.getLogger(__name__)

MAX_WAIT_S = 60.0  # a model asking to wait longer than this is stuck, not patient
# Between the two clicks of a double click: well inside every toolkit's double-click
# interval, but not back to back — Qt under Xvfb missed back-to-back XTEST clicks as a
# double click in 1 of 6 runs (0 of 22 with this gap).
DOUBLE_CLICK_GAP_S = 0.05


def clamp(monitor: Rect, x: float, y: float) -> tuple[int, int]:
    """Round to whole logical pixels inside `monitor` (right/bottom are exclusive)."""
    cx = min(max(round(x), monitor.left), monitor.right - 1)
    cy = min(max(round(y), monitor.top), monitor.bottom - 1)
    return cx, cy


def needs_clipboard(text: str) -> bool:
    """pyautogui.write only knows printable ASCII; anything else is pasted."""
    return not (text.isascii() and text.isprintable())


class Executor:
    """Turns actions into pointer and keyboard events."""

    def __init__(self, *, clipboard: Clipboard | None = None, drag_duration: float = 0.4,
                 paste_delay: float = 0.3, paste_timeout: float = 10.0,
                 offer_delay: float = 0.3, type_interval: float = 0.005):
        self._clipboard = clipboard
        self.drag_duration = drag_duration
        self.paste_delay = paste_delay  # where requests can't be seen: time to fetch the text
        # xclip: longest wait for the app to fetch the text. Generous: a busy machine takes
        # seconds, and an app still waiting on an earlier clipboard owner answers only after
        # its own timeout (Qt's is 5 s). The wait ends as soon as the app asks.
        self.paste_timeout = paste_timeout
        # Between taking the clipboard and pressing ctrl+v: the app must first handle the
        # change of clipboard owner. A busy Qt app (measured: the sandbox at 2x on a loaded
        # 2-core machine, 1 paste in 4 lost) otherwise never asks for the text.
        self.offer_delay = offer_delay
        self.type_interval = type_interval
        self.cancel = threading.Event()  # set to cut a `wait` short (kill switch)
        self._held: list[str] = []  # keys a `press` holds down, as pressed, in order
        self._held_lock = threading.Lock()

    @property
    def clipboard(self) -> Clipboard:
        if self._clipboard is None:
            self._clipboard = Clipboard()
        return self._clipboard

    def execute(self, action: A.Action, monitor: Rect) -> ExecutionResult:
        try:
            details = self._dispatch(action, monitor)
        except (ValueError, ClipboardError) as exc:
            return ExecutionResult(ok=False, error=f"{action.name}: {exc}")
        except Exception as exc:
            if type(exc).__name__ == "FailSafeException":
                return ExecutionResult(
                    ok=False,
                    error="stopped by pyautogui's fail-safe: the pointer was in a screen corner",
                    details={"failsafe": True},
                )
            raise
        return ExecutionResult(ok=True, details=details)

    # --- coordinates ---------------------------------------------------------------------

    def _input_xy(self, point: A.Point | None, monitor: Rect, what: str) -> tuple[int, int]:
        if point is None:
            raise ValueError(f"no screen coordinates for the {what} (frames.to_screen not run)")
        x, y = clamp(monitor, point.x, point.y)
        s = desktop_scale() or 1.0
        return round(x * s), round(y * s)

    # --- dispatch ------------------------------------------------------------------------

    def _dispatch(self, action: A.Action, monitor: Rect) -> dict:
        if A.is_mobile(action):
            raise ValueError("is a phone action and cannot run on a desktop")
        if isinstance(action, A.TERMINAL_ACTIONS):
            return {}
        if isinstance(action, A.Wait):
            return self._wait(action.seconds)
        gui = load_pyautogui()
        if isinstance(action, A.PointerAction):
            x, y = self._input_xy(action.screen, monitor, action.name)
            if isinstance(action, A.Hover):
                gui.moveTo(x, y)
            elif isinstance(action, A.Click):
                gui.click(x, y)
            elif isinstance(action, A.DoubleClick):
                gui.doubleClick(x, y, interval=DOUBLE_CLICK_GAP_S)
            elif isinstance(action, A.TripleClick):
                gui.tripleClick(x, y, interval=DOUBLE_CLICK_GAP_S)
            elif isinstance(action, A.RightClick):
                gui.rightClick(x, y)
            elif isinstance(action, A.MiddleClick):
                gui.middleClick(x, y)
            else:
                raise ValueError("is not supported on the desktop")
            return {"input": [x, y]}
        if isinstance(action, A.Drag):
            x0, y0 = self._input_xy(action.screen_start, monitor, "drag start")
            x1, y1 = self._input_xy(action.screen_end, monitor, "drag end")
            gui.moveTo(x0, y0)
            gui.mouseDown(x0, y0)
            try:
                # Intermediate motion events: many widgets ignore a jump from press to release.
                gui.moveTo(x1, y1, duration=self.drag_duration)
            finally:
                gui.mouseUp(x1, y1)
            return {"input": [[x0, y0], [x1, y1]]}
        if isinstance(action, A.Scroll):
            return self._scroll(gui, action, monitor)
        if isinstance(action, A.Hotkey):
            keys = map_keys(action.keys, known=gui.KEYBOARD_KEYS)
            # Keys still held by a `press` stay down: pyautogui.hotkey would release them.
            held = self.held_keys
            gui.hotkey(*[k for k in keys if k not in held])
            return {"keys": keys, **({"held": list(held)} if held else {})}
        if isinstance(action, A.Press):
            keys = map_keys(action.keys, known=gui.KEYBOARD_KEYS)
            for key in keys:
                with self._held_lock:
                    if key not in self._held:
                        self._held.append(key)
                _release_at_exit(self)
                gui.keyDown(key)
            return {"keys": keys}
        if isinstance(action, A.Release):
            keys = map_keys(action.keys, known=gui.KEYBOARD_KEYS)
            for key in reversed(keys):
                gui.keyUp(key)
                with self._held_lock:
                    if key in self._held:
                        self._held.remove(key)
            return {"keys": keys}
        if isinstance(action, A.Type):
            return self._type(gui, action.text, action.enter)
        raise ValueError("is not an action the desktop can execute")

    @property
    def held_keys(self) -> tuple[str, ...]:
        """Keys pressed by `press` and not yet released (pyautogui names)."""
        with self._held_lock:
            return tuple(self._held)

    def release_held(self) -> list[str]:
        """Let go of every held key, last pressed first; returns what was released.

        Called when a run ends in any way (agent.loop), and at process exit."""
        with self._held_lock:
            held, self._held = self._held, []
        if not held:
            return []
        gui = load_pyautogui()
        failed = []
        for key in reversed(held):
            try:
                gui.keyUp(key)
            except Exception as exc:  # one stuck key must not keep the others down
                log.error("could not release the %s key: %s", key, exc)
                failed.append(key)
        if failed:
            raise RuntimeError(f"could not release: {', '.join(failed)}")
        log.info("released held keys: %s", ", ".join(reversed(held)))
        return list(reversed(held))

    def _wait(self, seconds: float) -> dict:
        if not 0 <= seconds <= MAX_WAIT_S:
            raise ValueError(f"wait must be between 0 and {MAX_WAIT_S:g} seconds, got {seconds}")
        interrupted = self.cancel.wait(seconds)
        return {"waited": seconds, "interrupted": interrupted}

    def _scroll(self, gui, action: A.Scroll, monitor: Rect) -> dict:
        details: dict = {"direction": action.direction, "clicks": action.amount}
        if action.point is not None or action.screen is not None:
            x, y = self._input_xy(action.screen, monitor, "scroll")
            gui.moveTo(x, y)
            details["input"] = [x, y]
        if action.direction in ("up", "down"):
            gui.scroll(action.amount if action.direction == "up" else -action.amount)
        else:
            # X11: buttons 6 (left) / 7 (right); macOS/Windows: native horizontal wheel.
            gui.hscroll(action.amount if action.direction == "right" else -action.amount)
        return details

    def _type(self, gui, text: str, enter: bool) -> dict:
        if text and not needs_clipboard(text):
            gui.write(text, interval=self.type_interval)
            method = "keys"
        elif text:
            if not self._paste(gui, text):
                raise ValueError("nothing took the pasted text: click into a text field first")
            method = "clipboard"
        else:
            method = "none"
        if enter:
            gui.press("enter")
        return {"method": method, "chars": len(text), "enter": enter}

    def _paste(self, gui, text: str) -> bool:
        """Paste `text` through the clipboard and give the person theirs back.

        Returns whether the app was seen fetching the text (always True where the
        clipboard tool cannot tell, after a fixed `paste_delay`).
        """
        clipboard = self.clipboard
        saved = clipboard.save()
        watch = clipboard.offer(text)
        fetched = True
        try:
            before = watch.served if watch else 0
            time.sleep(self.offer_delay)
            gui.hotkey(map_key("ctrl"), "v")
            if watch is not None:
                fetched = watch.wait_served(before, timeout=self.paste_timeout)
                if not fetched:
                    log.warning("no application asked for the pasted text within %.1fs "
                                "(is a text field focused?)", self.paste_timeout)
            else:
                # The target app fetches the content asynchronously after the keystroke;
                # restoring too early would paste the person's clipboard instead.
                time.sleep(self.paste_delay)
        finally:
            try:
                if watch is None or saved.data is not None:
                    clipboard.restore(saved)
                # else nobody owned the clipboard before: closing the watch leaves it
                # unowned again. Restoring "empty" would start a new owner that apps query
                # at once; if the next paste replaced it mid-answer, a Qt app would stall
                # for its 5 s clipboard timeout and miss that paste.
            except ClipboardError as exc:
                log.warning("could not restore the clipboard: %s", exc)
            if watch is not None:
                watch.close()
        return fetched


# Executors holding keys, released if the process exits with them still down (a crash
# in the caller, sys.exit, Ctrl+C twice). Weak, so a finished executor is not kept alive.
_HOLDING: weakref.WeakSet[Executor] = weakref.WeakSet()
_atexit_registered = False


def _release_at_exit(executor: Executor) -> None:
    global _atexit_registered
    _HOLDING.add(executor)
    if not _atexit_registered:
        atexit.register(release_all_held)
        _atexit_registered = True


def release_all_held() -> None:
    """Release the held keys of every executor in this process."""
    for executor in list(_HOLDING):
        try:
            executor.release_held()
        except Exception as exc:
            log.error("could not release held keys at exit: %s", exc)
