"""Listen to a person's mouse and keyboard (pynput) and screenshot before each action.

A grabber thread keeps the newest screenshot of the recorded monitor (every
`interval` s). Whenever an event could begin a new action (a button press, the first
wheel notch, a key press that does not continue a typing run), the newest screenshot -
taken before the event, so before the app reacted - is kept for it. Only those frames
are kept, so a long demonstration does not fill the memory with video.
Events become actions afterwards, in agent/demo.py.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent import demo as D
from agent.desktop.capture import Capturer, MonitorChoice
from agent.desktop.errors import DisplayError
from agent.desktop.killswitch import DEFAULT_HOTKEY, KillSwitch
from agent.desktop.monitors import Monitor, desktop_scale, require_display

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

# pynput Key names -> UI-TARS key names (characters are handled separately).
_KEY_NAMES = {
    "ctrl_l": "ctrl", "ctrl_r": "ctrl", "alt_l": "alt", "alt_r": "alt", "alt_gr": "alt",
    "shift_l": "shift", "shift_r": "shift", "cmd_l": "cmd", "cmd_r": "cmd",
    "page_up": "pageup", "page_down": "pagedown", "caps_lock": "capslock",
    "num_lock": "numlock", "scroll_lock": "scrolllock", "print_screen": "printscreen",
}


def key_name(key) -> tuple[str, str | None]:
    """A pynput key -> (UI-TARS name, typed character or None)."""
    char = getattr(key, "char", None)
    if char and len(char) == 1 and ord(char) < 32:
        # Windows reports ctrl+A..Z as the control characters 0x01..0x1a.
        return (chr(ord(char) + 96), None) if 1 <= ord(char) <= 26 else (f"0x{ord(char):02x}", None)
    if char:
        return char.lower(), char
    name = getattr(key, "name", None) or str(key)
    name = _KEY_NAMES.get(name, name)
    if name == "cmd" and sys.platform != "darwin":
        name = "win"
    if name == "space":
        return "space", " "
    return name, None


def chord_names(hotkey: str) -> set[str]:
    """'<ctrl>+<alt>+<shift>+s' -> {'ctrl', 'alt', 'shift', 's'} (demo key names)."""
    names = set()
    for part in hotkey.split("+"):
        name = part.strip().strip("<>").lower()
        name = _KEY_NAMES.get(name, name)
        names.add("win" if name == "cmd" and sys.platform != "darwin" else name)
    return names


@dataclass
class Recording:
    """What a listening session captured. Times are time.time() seconds."""

    monitor: Monitor
    events: list[D.Event] = field(default_factory=list)
    frames: list[tuple[float, Image]] = field(default_factory=list)
    final: tuple[float, Image] | None = None


class DemoListener:
    """start() -> the person works -> stop hotkey (or stop()) -> `recording`."""

    def __init__(self, monitor: MonitorChoice = "auto", stop_hotkey: str = DEFAULT_HOTKEY,
                 interval: float = 0.1):
        self.capturer = Capturer(monitor)
        self.stop_hotkey = stop_hotkey
        self.interval = interval
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._latest: tuple[float, Image] | None = None
        self._kept: dict[float, Image] = {}
        self._typing = False  # the last key press continued (or began) a typing run
        self._threads: list = []
        self.recording: Recording | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> DemoListener:
        require_display()
        monitor = self.capturer.choose()
        self.recording = Recording(monitor)
        self._grab_once(monitor)  # there is always a "before" frame for the first action
        grabber = threading.Thread(target=self._grab_loop, args=(monitor,), daemon=True,
                                   name="demo-grabber")
        grabber.start()
        try:
            from pynput import keyboard, mouse
        except ImportError as exc:
            raise DisplayError(f"cannot listen to the mouse and keyboard: {exc}") from exc
        self._mouse = mouse.Listener(on_click=self._on_click, on_scroll=self._on_scroll)
        self._keys = keyboard.Listener(on_press=self._on_press, on_release=self._on_release)
        self._kill = KillSwitch(self.stop_hotkey, self.stop)
        for listener in (self._mouse, self._keys):
            listener.daemon = True
            listener.start()
            listener.wait()
        self._kill.start()
        self._threads = [grabber]
        return self

    def stop(self) -> None:
        """End the recording (called from the kill switch's thread, or any other)."""
        self.stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)

    def finish(self) -> Recording:
        """Stop listening and return the recording (the stop chord's keys removed)."""
        self.stopped.set()
        for listener in (self._kill, self._keys, self._mouse):
            listener.stop()
        from agent.desktop.killswitch import _unblock_xorg

        for listener in (self._keys, self._mouse):
            _unblock_xorg(listener)
            listener.join(timeout=2.0)
        for thread in self._threads:
            thread.join(timeout=2.0)
        rec = self.recording
        with self._lock:
            rec.events = D.drop_stop_chord(rec.events, chord_names(self.stop_hotkey))
            rec.frames = sorted(self._kept.items())
            rec.final = self._latest
        self.capturer.close()
        return rec

    # --- screenshots ----------------------------------------------------------------------

    def _grab_once(self, monitor: Monitor) -> None:
        t = time.time()
        image = self.capturer.grab(monitor)
        with self._lock:
            self._latest = (t, image)

    def _grab_loop(self, monitor: Monitor) -> None:
        while not self.stopped.is_set():
            try:
                self._grab_once(monitor)
            except DisplayError as exc:
                log.error("screenshot failed, recording stops: %s", exc)
                self.stopped.set()
                return
            self.stopped.wait(self.interval)
        try:
            self._grab_once(monitor)  # the screen as the demonstration ends
        except DisplayError:
            pass

    def _event(self, event: D.Event, *, keep_frame: bool) -> None:
        if self.stopped.is_set():
            return
        with self._lock:
            self.recording.events.append(event)
            if keep_frame and self._latest is not None:
                self._kept.setdefault(*self._latest)

    # --- pynput callbacks (their own threads) --------------------------------------------

    def _logical(self, x: float, y: float) -> tuple[float, float] | None:
        s = desktop_scale() or 1.0
        x, y = x / s, y / s
        return (x, y) if self.recording.monitor.rect.contains(x, y) else None

    def _on_click(self, x, y, button, pressed, *_injected) -> None:
        point = self._logical(x, y)
        name = getattr(button, "name", str(button))
        if point is None or name not in ("left", "right", "middle"):
            return
        self._typing = False
        self._event(D.MouseButton(*point, name, pressed, time.time()), keep_frame=pressed)

    def _on_scroll(self, x, y, dx, dy, *_injected) -> None:
        point = self._logical(x, y)
        if point is None:
            return
        with self._lock:
            last = self.recording.events[-1] if self.recording.events else None
        self._typing = False
        self._event(D.Wheel(*point, int(dx), int(dy), time.time()),
                    keep_frame=not isinstance(last, D.Wheel))

    def _on_press(self, key, *_injected) -> None:
        name, char = key_name(key)
        continues = self._typing and char is not None
        self._typing = char is not None or (self._typing and name in ("shift", "backspace"))
        self._event(D.Key(name, char, True, time.time()), keep_frame=not continues)

    def _on_release(self, key, *_injected) -> None:
        name, _char = key_name(key)
        self._event(D.Key(name, None, False, time.time()), keep_frame=False)
