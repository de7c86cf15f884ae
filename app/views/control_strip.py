"""The compact always-on-top control strip shown while the agent drives the screen."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.hiding import CONTROL_PROPERTY


class ControlStrip(QWidget):
    pause_clicked = Signal()
    resume_clicked = Signal()
    stop_clicked = Signal()
    show_window_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Tool | Qt.WindowType.FramelessWindowHint
                         | Qt.WindowType.WindowStaysOnTopHint
                         | Qt.WindowType.WindowDoesNotAcceptFocus)
        # Never take the keyboard from the app the agent is typing into.
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating, True)
        # Stays on screen while the screen settles after an action, so Stop is reachable.
        self.setProperty(CONTROL_PROPERTY, True)
        self.setWindowTitle("deskpilot")
        self._paused = False
        self._drag: QPoint | None = None
        frame = QFrame()
        frame.setObjectName("strip")
        self.status = QLabel("Starting…")
        self.status.setMinimumWidth(260)
        self.status.setMaximumWidth(420)
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("danger")
        self.show_button = QPushButton("Window")
        self.show_button.setToolTip("Show the main window (it hides during each screenshot)")
        row = QHBoxLayout(frame)
        row.setContentsMargins(12, 6, 8, 6)
        row.addWidget(QLabel("●"))
        row.addWidget(self.status, 1)
        for b in (self.pause_button, self.stop_button, self.show_button):
            row.addWidget(b)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(frame)
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.stop_button.clicked.connect(self.stop_clicked)
        self.show_button.clicked.connect(self.show_window_clicked)

    def _pause_or_resume(self) -> None:
        (self.resume_clicked if self._paused else self.pause_clicked).emit()

    def set_paused(self, paused: bool) -> None:
        self._paused = paused
        self.pause_button.setText("Resume" if paused else "Pause")

    def set_status(self, text: str) -> None:
        line = " ".join(text.split())
        metrics = self.status.fontMetrics()
        self.status.setText(metrics.elidedText(line, Qt.TextElideMode.ElideRight, 400))

    def place(self) -> None:
        """Bottom centre of the screen, above the task bar: clear of title bars and menus,
        where the agent's clicks usually go. The person can drag it elsewhere."""
        screen = self.screen()
        if screen is None:
            return
        self.adjustSize()
        geo = screen.availableGeometry()
        self.move(geo.left() + (geo.width() - self.width()) // 2,
                  geo.bottom() - self.height() - 12)

    # Frameless: let the person drag it anywhere.
    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._drag = event.globalPosition().toPoint() - self.frameGeometry().topLeft()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._drag is not None:
            self.move(event.globalPosition().toPoint() - self._drag)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._drag = None
