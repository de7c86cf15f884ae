"""The practice sandbox: a small window a person can safely point the agent at.

It has one target for every kind of action (buttons for click, double-click, right and
middle click; a hover label; a one-line and a multi-line text field; a checkbox; a long
list to scroll; a wide strip to scroll sideways; a slider to drag; a menu action bound
to ctrl+shift+h). With `--state-file PATH` it writes its whole state as JSON after every
change (atomically: temp file + rename), including each widget's rectangle in screen
pixels, so tests can aim at widgets and check what the agent did without guessing.

The window sits at a fixed position and size so scripted coordinates stay valid. Rects
in the state are in native screen pixels: Qt's logical geometry times the device pixel
ratio (QT_SCALE_FACTOR=2 gives a window twice as large on screen).

With a task seed it shows practice task N instead (agent/tasks, rendered by
app/task_window.py): the window at the task's seeded position and size, its
instruction in the title, its state (agent/tasks/state.py) in the state file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

STATE_VERSION = 1
WINDOW_POS = (20, 20)  # logical pixels: clear of any screen corner (pyautogui's fail-safe)
WINDOW_SIZE = (880, 680)
LIST_ITEMS = 300
HSCROLL_WIDTH = 4000

Qt = QtCore.Qt


class CountingButton(QtWidgets.QPushButton):
    """A button that also counts the mouse events a plain QPushButton ignores."""

    doubleClicked = QtCore.Signal()
    otherClicked = QtCore.Signal(str)  # "right" or "middle"

    def mouseDoubleClickEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton:
            self.doubleClicked.emit()
        super().mouseDoubleClickEvent(event)

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton:
            self.otherClicked.emit("right")
        elif event.button() == Qt.MouseButton.MiddleButton:
            self.otherClicked.emit("middle")
        super().mousePressEvent(event)


class HoverLabel(QtWidgets.QLabel):
    hovered = QtCore.Signal(bool)

    def enterEvent(self, event) -> None:  # noqa: N802
        self.hovered.emit(True)
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        self.hovered.emit(False)
        super().leaveEvent(event)


class Sandbox(QtWidgets.QMainWindow):
    """The practice window. `state()` is the JSON-ready state; `state_file` mirrors it."""

    def __init__(self, state_file: str | os.PathLike | None = None):
        super().__init__()
        self.state_file = Path(state_file) if state_file else None
        self.counts = {"clicks": 0, "double_clicks": 0, "right_clicks": 0, "middle_clicks": 0,
                       "hover_count": 0, "menu_action_count": 0}
        self.hovering = False
        self.click_modifiers: list[list[str]] = []  # modifiers held at each click
        self.setWindowTitle("deskpilot practice sandbox")
        self._build()
        self.setFixedSize(*WINDOW_SIZE)
        self.move(*WINDOW_POS)

    # --- layout ------------------------------------------------------------------------

    def _build(self) -> None:
        menu = self.menuBar().addMenu("&Tools")
        self.menu_action = QtGui.QAction("&Highlight", self)
        self.menu_action.setShortcut(QtGui.QKeySequence("Ctrl+Shift+H"))
        self.menu_action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self.menu_action.triggered.connect(lambda: self._count("menu_action_count"))
        menu.addAction(self.menu_action)

        self.click_button = CountingButton("Click me")
        self.click_button.clicked.connect(self._on_click)
        self.double_button = CountingButton("Double-click me")
        self.double_button.doubleClicked.connect(lambda: self._count("double_clicks"))
        self.right_button = CountingButton("Right- or middle-click me")
        self.right_button.otherClicked.connect(lambda which: self._count(f"{which}_clicks"))
        self.hover_label = HoverLabel("Hover over me")
        self.hover_label.setFrameShape(QtWidgets.QFrame.Shape.Box)
        self.hover_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hover_label.hovered.connect(self._on_hover)

        self.line_edit = QtWidgets.QLineEdit()
        self.line_edit.setPlaceholderText("one line of text")
        self.line_edit.textChanged.connect(self._changed)
        self.line_edit.selectionChanged.connect(self._changed)
        self.text_edit = QtWidgets.QPlainTextEdit()
        self.text_edit.setPlaceholderText("several lines of text")
        self.text_edit.textChanged.connect(self._changed)
        self.checkbox = QtWidgets.QCheckBox("Remember me")
        self.checkbox.toggled.connect(self._changed)

        self.list = QtWidgets.QListWidget()
        self.list.addItems([f"Item {i}" for i in range(LIST_ITEMS)])
        self.list.verticalScrollBar().valueChanged.connect(self._changed)
        self.list.currentRowChanged.connect(self._changed)

        strip = QtWidgets.QLabel("  ".join(f"[{i}]" for i in range(400)))
        strip.setFixedSize(HSCROLL_WIDTH, 40)
        self.hscroll = QtWidgets.QScrollArea()
        self.hscroll.setWidget(strip)
        self.hscroll.setFixedHeight(70)
        self.hscroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.hscroll.horizontalScrollBar().valueChanged.connect(self._changed)

        self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.valueChanged.connect(self._changed)

        buttons = QtWidgets.QHBoxLayout()
        for widget in (self.click_button, self.double_button, self.right_button,
                       self.hover_label):
            widget.setMinimumHeight(40)
            buttons.addWidget(widget)
        left = QtWidgets.QVBoxLayout()
        left.addLayout(buttons)
        left.addWidget(self.line_edit)
        left.addWidget(self.text_edit)
        left.addWidget(self.checkbox, 0, Qt.AlignmentFlag.AlignLeft)
        left.addWidget(self.slider)
        left.addWidget(self.hscroll)
        # What happened so far, on screen: the person sees the effect of each action, and
        # the agent's screenshots change (so the loop's stuck detection sees progress).
        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(36)
        body = QtWidgets.QHBoxLayout()
        body.addLayout(left, 3)
        body.addWidget(self.list, 1)
        outer = QtWidgets.QVBoxLayout()
        outer.addLayout(body)
        outer.addWidget(self.status)
        central = QtWidgets.QWidget()
        central.setLayout(outer)
        self.setCentralWidget(central)

    # --- events ------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.counts[name] += 1
        self._changed()

    def _on_click(self) -> None:
        mods = QtWidgets.QApplication.keyboardModifiers()
        names = [name for name, flag in (("shift", Qt.KeyboardModifier.ShiftModifier),
                                         ("ctrl", Qt.KeyboardModifier.ControlModifier),
                                         ("alt", Qt.KeyboardModifier.AltModifier))
                 if mods & flag]
        self.click_modifiers.append(names)
        self._count("clicks")

    def _on_hover(self, inside: bool) -> None:
        self.hovering = inside
        self.hover_label.setText("Hovering!" if inside else "Hover over me")
        if inside:
            self.counts["hover_count"] += 1
        self._changed()

    def moveEvent(self, event) -> None:  # noqa: N802 - geometry is part of the state
        super().moveEvent(event)
        self._changed()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._changed()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        # Layouts settle after the first show; write once they have.
        QtCore.QTimer.singleShot(200, self._changed)

    # --- state -------------------------------------------------------------------------

    def _rect(self, widget: QtWidgets.QWidget, local: QtCore.QRect | None = None) -> dict:
        """A widget's rect (or a sub-rect of it) in native screen pixels."""
        local = local or widget.rect()
        top_left = widget.mapToGlobal(local.topLeft())
        dpr = widget.devicePixelRatioF()
        return {"x": round(top_left.x() * dpr), "y": round(top_left.y() * dpr),
                "width": round(local.width() * dpr), "height": round(local.height() * dpr)}

    def _slider_handle(self) -> QtCore.QRect:
        option = QtWidgets.QStyleOptionSlider()
        self.slider.initStyleOption(option)
        return self.slider.style().subControlRect(
            QtWidgets.QStyle.ComplexControl.CC_Slider, option,
            QtWidgets.QStyle.SubControl.SC_SliderHandle, self.slider)

    def state(self) -> dict:
        list_bar = self.list.verticalScrollBar()
        menu_bar = self.menuBar()
        tools_rect = menu_bar.actionGeometry(menu_bar.actions()[0])
        return {
            "version": STATE_VERSION,
            **self.counts,
            "hovering": self.hovering,
            "click_modifiers": self.click_modifiers,
            "line_edit": self.line_edit.text(),
            "line_edit_selection": self.line_edit.selectedText(),
            "text_edit": self.text_edit.toPlainText(),
            "checked": self.checkbox.isChecked(),
            "list_scroll": list_bar.value(),
            "list_scroll_max": list_bar.maximum(),
            "list_current_row": self.list.currentRow(),
            "hscroll": self.hscroll.horizontalScrollBar().value(),
            "slider": self.slider.value(),
            "device_pixel_ratio": self.devicePixelRatioF(),
            "visible": self.isVisible(),
            "widgets": {
                "window": self._rect(self),
                "click_button": self._rect(self.click_button),
                "double_button": self._rect(self.double_button),
                "right_button": self._rect(self.right_button),
                "hover_label": self._rect(self.hover_label),
                "line_edit": self._rect(self.line_edit),
                "text_edit": self._rect(self.text_edit),
                "checkbox": self._rect(self.checkbox),
                "list": self._rect(self.list.viewport()),
                "hscroll": self._rect(self.hscroll.viewport()),
                "slider": self._rect(self.slider),
                "slider_handle": self._rect(self.slider, self._slider_handle()),
                "tools_menu": self._rect(menu_bar, tools_rect),
            },
        }

    def _changed(self, *_args) -> None:
        c = self.counts
        self.status.setText(
            f"clicks {c['clicks']} · double {c['double_clicks']} · right {c['right_clicks']} · "
            f"middle {c['middle_clicks']} · hovers {c['hover_count']} · "
            f"menu {c['menu_action_count']} · slider {self.slider.value()}"
        )
        if self.state_file is not None and self.isVisible():
            write_json_atomic(self.state_file, self.state())


def write_json_atomic(path: Path, data: dict) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def task_window(seed: int, state_file: str | os.PathLike | None = None,
                screen: QtCore.QRect | None = None, difficulty: int | None = None):
    """Practice task `seed`'s window, placed on `screen` (default: the primary screen's
    available area) and mirroring its state to `state_file`."""
    from agent.tasks import generate
    from app.task_window import TaskWindow, prepare_application

    app = QtWidgets.QApplication.instance()
    prepare_application(app)
    path = Path(state_file) if state_file else None
    window = TaskWindow(generate(seed, difficulty))

    def write_state() -> None:
        if path is not None and window.isVisible():
            write_json_atomic(path, window.state())

    window.on_change = write_state
    area = screen or app.primaryScreen().availableGeometry()
    x, y = window.task.layout.position_on(area.width(), area.height())
    window.move(area.x() + x, area.y() + y)
    return window


def run(state_file: str | None = None, task_seed: int | None = None,
        difficulty: int | None = None) -> int:
    """Show the sandbox (or practice task `task_seed`) until its window is closed."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["deskpilot-sandbox"])
    if task_seed is None:
        window = Sandbox(state_file)
    else:
        window = task_window(task_seed, state_file, difficulty=difficulty)
    window.show()
    window.raise_()
    window.activateWindow()
    return app.exec()
