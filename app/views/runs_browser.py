"""The runs browser: every recorded run with task, date, outcome, steps and duration."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.theme import OUTCOME_COLORS

RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
COLUMNS = ("Task", "Date", "Outcome", "Steps", "Duration")


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60} min"


def row_cells(summary) -> list[str]:
    """The table cells of one agent.trajectory.RunSummary."""
    started = summary.started_at
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else "—"
    duration = (summary.ended_at - started) if (started and summary.ended_at) else None
    task = summary.task or (f"(unreadable: {summary.error})" if summary.error else "(no task)")
    return [task, date, summary.outcome, str(summary.steps), format_duration(duration)]


class RunsBrowser(QWidget):
    open_requested = Signal(Path)
    replay_requested = Signal(Path)
    export_requested = Signal(list)  # list[Path]
    finetune_requested = Signal(list)  # list[Path]
    report_requested = Signal(Path)
    refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._paths: list[Path] = []
        title = QLabel("Runs")
        title.setObjectName("title")
        self.folder = QLabel()
        self.folder.setObjectName("muted")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setShowGrid(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.open_button = QPushButton("Open in inspector")
        self.open_button.setObjectName("primary")
        self.replay_button = QPushButton("Replay")
        self.export_button = QPushButton("Export…")
        self.report_button = QPushButton("HTML report")
        self.finetune_button = QPushButton("Fine-tune on selected runs…")
        self.refresh_button = QPushButton("Refresh")
        buttons = QHBoxLayout()
        for b in (self.open_button, self.replay_button, self.export_button, self.report_button,
                  self.finetune_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.folder)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

        self.open_button.clicked.connect(lambda: self._emit_one(self.open_requested))
        self.replay_button.clicked.connect(lambda: self._emit_one(self.replay_requested))
        self.report_button.clicked.connect(lambda: self._emit_one(self.report_requested))
        self.export_button.clicked.connect(self._export)
        self.finetune_button.clicked.connect(
            lambda: self.selected_paths() and self.finetune_requested.emit(self.selected_paths()))
        self.refresh_button.clicked.connect(self.refresh_requested)
        self.table.cellDoubleClicked.connect(lambda *_: self._emit_one(self.open_requested))
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self._selection_changed()

    def set_runs(self, summaries: list, folder: Path | None = None) -> None:
        if folder is not None:
            self.folder.setText(f"{len(summaries)} runs in {folder}")
        self._paths = [s.path for s in summaries]
        self.table.setRowCount(len(summaries))
        for r, summary in enumerate(summaries):
            for c, text in enumerate(row_cells(summary)):
                item = QTableWidgetItem(text)
                item.setToolTip(str(summary.path) if c == 0 else text)
                if c == 2:
                    item.setForeground(QColor(OUTCOME_COLORS.get(summary.outcome, "#8b90a5")))
                if c in (3, 4):
                    item.setTextAlignment(RIGHT)
                self.table.setItem(r, c, item)
        self._selection_changed()

    def paths(self) -> list[Path]:
        return list(self._paths)

    def selected_paths(self) -> list[Path]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self._paths[r] for r in rows if r < len(self._paths)]

    def select(self, path: Path) -> None:
        if path in self._paths:
            self.table.selectRow(self._paths.index(path))

    def _emit_one(self, signal) -> None:
        selected = self.selected_paths()
        if selected:
            signal.emit(selected[0])

    def _export(self) -> None:
        selected = self.selected_paths()
        if selected:
            self.export_requested.emit(selected)

    def _selection_changed(self) -> None:
        n = len(self.selected_paths())
        for b in (self.open_button, self.replay_button, self.report_button):
            b.setEnabled(n == 1)
        self.export_button.setEnabled(n >= 1)
        self.finetune_button.setEnabled(n >= 1)
