"""The pure model of a practice window: the task's layout, acted on without Qt.

`TaskModel(task).execute(action)` applies one action (screen coordinates filled in) the
way the Qt window in app/task_window.py reacts to it, and `state()` reports the same
schema (agent/tasks/state.py). Thousands of tasks can be checked against the expert in
seconds this way; the Qt window is the real thing and is tested against it on a few
hundred seeds.

Behaviour mirrored from the Qt window: a click while a menu is open only closes it
(unless it lands on the menu's items or title); the modal dialog takes every click
while open; clicking a field focuses it, clicking any other control takes the focus
away; a wheel notch scrolls a list by three rows; dragging a slider's handle moves its
value by the distance dragged; clicking a slider's groove pages by 10 towards the click.
"""

from __future__ import annotations

from agent import actions as A
from agent.protocols import ExecutionResult
from agent.tasks.checker import initial_values
from agent.tasks.layout import DIALOG_ID, Task, Widget
from agent.tasks.state import STATE_VERSION, rect

SLIDER_HANDLE_PX = 16
WHEEL_ROWS = 3  # rows a list scrolls per wheel notch (Qt's default wheelScrollLines)
SLIDER_PAGE = 10


class TaskModel:
    """A practice window on a screen of `screen_size` logical pixels."""

    def __init__(self, task: Task, screen_size: tuple[int, int] = (1280, 800)):
        self.task = task
        self.layout = task.layout
        self.origin = self.layout.position_on(*screen_size)
        self.values = initial_values(self.layout)
        self.first_row = {w.id: 0 for w in self.layout.widgets if w.kind == "list"}
        self.focus: str | None = None
        self.selected_all = False
        self.open_menu: str | None = None
        self.dialog_open = any(w.kind == "dialog" for w in self.layout.widgets)
        self.events: list[dict] = []

    # --- geometry -----------------------------------------------------------------------

    def shown(self, w: Widget) -> bool:
        if w.kind == "menu_item":
            return self.open_menu == w.parent
        if w.kind == "dialog" or w.parent == DIALOG_ID:
            return self.dialog_open
        if w.page is not None:
            tab = self.layout.widget(w.page)
            return self.values.get("tabs") == tab.label
        return True

    def _visible_rows(self, w: Widget) -> int:
        return max(1, (w.box.height - 4) // self.layout.list_row_px)

    def _handle(self, w: Widget) -> tuple[float, float, float, float]:
        span = w.box.width - SLIDER_HANDLE_PX
        x = w.box.x + self.values[w.id] / 100 * span
        return x, w.box.y + w.box.height / 2 - 8, SLIDER_HANDLE_PX, 16

    def hit(self, x: float, y: float) -> Widget | None:
        """The widget under window-local (x, y), as input sees it."""
        widgets = self.layout.widgets
        if self.open_menu is not None:
            for w in widgets:
                if w.kind == "menu_item" and w.parent == self.open_menu and w.box.contains(x, y):
                    return w
        if self.dialog_open:
            for w in widgets:
                if w.parent == DIALOG_ID and w.kind != "label" and w.box.contains(x, y):
                    return w
            return next(w for w in widgets if w.kind == "dialog")  # the modal takes it
        for w in widgets:
            if (w.kind not in ("label", "status", "menu_item", "dialog") and self.shown(w)
                    and w.box.contains(x, y)):
                return w
        return None

    # --- acting -------------------------------------------------------------------------

    def _local(self, point: A.Point | None) -> tuple[float, float]:
        if point is None:
            raise ValueError("the action has no screen coordinates (frames.to_screen)")
        return point.x - self.origin[0], point.y - self.origin[1]

    def _event(self, w: Widget, event: str) -> None:
        self.events.append({"widget": w.id, "event": event, "values": dict(self.values)})

    def _pointer_over(self, x: float, y: float) -> None:
        w = self.hit(x, y)
        if w is not None and w.kind == "hover":
            self._event(w, "hover")

    def execute(self, action: A.Action) -> ExecutionResult:
        if isinstance(action, A.PointerAction):
            x, y = self._local(action.screen)
            self._pointer_over(x, y)
            if isinstance(action, A.Click):
                self._click(x, y)
            elif isinstance(action, A.DoubleClick):
                self._click(x, y, double=True)
            elif isinstance(action, A.RightClick):
                w = self.hit(x, y)
                if self.open_menu is not None and (w is None or w.kind != "menu_item"):
                    self.open_menu = None
                elif w is not None and w.kind == "button":
                    self._event(w, "right_click")
        elif isinstance(action, A.Drag):
            self._drag(self._local(action.screen_start), self._local(action.screen_end))
        elif isinstance(action, A.Scroll):
            x, y = self._local(action.screen)
            w = self.hit(x, y)
            if w is not None and w.kind == "list" and action.direction in ("up", "down"):
                step = WHEEL_ROWS * action.amount * (1 if action.direction == "down" else -1)
                last = max(0, len(w.items) - self._visible_rows(w))
                self.first_row[w.id] = min(last, max(0, self.first_row[w.id] + step))
        elif isinstance(action, A.Type):
            if self.focus is not None:
                old = "" if self.selected_all else self.values[self.focus]
                self.values[self.focus] = old + action.text
                self.selected_all = False
        elif isinstance(action, A.Hotkey):
            if self.focus is not None and set(action.keys) == {"ctrl", "a"}:
                self.selected_all = bool(self.values[self.focus])
        return ExecutionResult(True)

    def _click(self, x: float, y: float, double: bool = False) -> None:
        w = self.hit(x, y)
        if self.open_menu is not None and (w is None or w.kind not in ("menu_item", "menu")):
            self.open_menu = None  # the click only closes the menu
            return
        if w is None:
            return
        if w.kind != "field":
            self.focus, self.selected_all = None, False
        if w.kind == "button":
            self._event(w, "click")
            if double:
                self._event(w, "double_click")
                self._event(w, "click")
            if w.parent is not None:
                self.dialog_open = False
        elif w.kind == "checkbox":
            self.values[w.id] = not self.values[w.id] if not double else self.values[w.id]
        elif w.kind == "radio":
            self.values[w.group] = w.label
        elif w.kind == "tab":
            self.values["tabs"] = w.label
        elif w.kind == "field":
            self.focus, self.selected_all = w.id, double and bool(self.values[w.id])
        elif w.kind == "list":
            row = self.first_row[w.id] + int((y - w.box.y - 2) // self.layout.list_row_px)
            if 0 <= row < len(w.items):
                self.values[w.id] = w.items[row]
        elif w.kind == "slider":
            hx, _, hw, _ = self._handle(w)
            if not hx <= x < hx + hw:
                step = SLIDER_PAGE if x >= hx + hw else -SLIDER_PAGE
                self.values[w.id] = min(100, max(0, self.values[w.id] + step))
        elif w.kind == "menu":
            self.open_menu = None if self.open_menu == w.id else w.id
        elif w.kind == "menu_item":
            self._event(w, "trigger")
            self.open_menu = None

    def _drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        w = self.hit(*start)
        if self.open_menu is not None:
            self.open_menu = None
            return
        if w is None or w.kind != "slider":
            return
        hx, hy, hw, hh = self._handle(w)
        if not (hx <= start[0] < hx + hw):
            self._click(*start)
            return
        span = w.box.width - SLIDER_HANDLE_PX
        value = self.values[w.id] + round((end[0] - start[0]) / span * 100)
        self.values[w.id] = min(100, max(0, value))
        self._pointer_over(*end)

    # --- state --------------------------------------------------------------------------

    def _screen(self, x: float, y: float, width: float, height: float) -> dict:
        return rect(self.origin[0] + x, self.origin[1] + y, width, height)

    def state(self) -> dict:
        widgets = {}
        for w in self.layout.widgets:
            entry = {"kind": w.kind, "label": w.label, "shown": self.shown(w),
                     **self._screen(w.box.x, w.box.y, w.box.width, w.box.height)}
            if w.kind == "list":
                first, row_px = self.first_row[w.id], self.layout.list_row_px
                entry["rows"] = [
                    {"row": i, "label": w.items[i],
                     **self._screen(w.box.x + 2, w.box.y + 2 + (i - first) * row_px,
                                    w.box.width - 4, row_px)}
                    for i in range(first, min(len(w.items), first + self._visible_rows(w)))
                ]
            elif w.kind == "slider":
                entry["handle"] = self._screen(*self._handle(w))
            widgets[w.id] = entry
        return {
            "version": STATE_VERSION,
            "task_seed": self.task.seed,
            "title": self.task.instruction,
            "visible": True,
            "device_pixel_ratio": 1.0,
            "window": self._screen(0, 0, self.layout.width, self.layout.height),
            "widgets": widgets,
            "values": dict(self.values),
            "focus": self.focus,
            "selection": self.values[self.focus] if self.focus and self.selected_all else "",
            "open_menu": self.open_menu,
            "dialog_open": self.dialog_open,
            "events": [dict(e) for e in self.events],
        }
