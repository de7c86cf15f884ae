"""The catalogue table on the Model tab: known checkpoints, their cost, what fits, download.

Rows come from app/catalogue.py (sizes and memory computed by train.plan). Choosing a row
fills the model field; a folder or hub id can still be typed there. Downloads run on a
Python thread and report through queued signals, so the UI never waits on the network.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import catalogue
from train.plan import GIB

COLUMNS = ("Model", "Dialect", "Download", "GPU bf16", "GPU fp8", "Fits here", "Downloaded")


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GB"


class _DownloadSignals(QObject):
    progress = Signal(int, int)
    finished = Signal(str, str)  # model id, snapshot folder
    failed = Signal(str, str)  # model id, message


class CatalogueView(QWidget):
    """Emits `chosen(model_id_or_folder)` when a row is picked."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.machine = catalogue.detect_machine()
        self.entries = catalogue.entries()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.machine_label = QLabel(f"This machine: {self.machine.describe()}. Memory = "
                                    f"weights + a 16k-token cache.")
        self.machine_label.setObjectName("muted")
        self.machine_label.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.download_progress = QProgressBar()
        self.download_progress.setRange(0, 1000)
        self.download_progress.setFormat("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.download_progress, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.machine_label)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

        self._cancel = threading.Event()
        self._signals = _DownloadSignals()
        self._signals.progress.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        self._signals.finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._signals.failed.connect(self._on_failed, Qt.ConnectionType.QueuedConnection)
        self._thread: threading.Thread | None = None
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button.clicked.connect(self._cancel.set)
        self.refresh()

    def refresh(self) -> None:
        cached = catalogue.cached_models()
        self.table.setRowCount(len(self.entries))
        for row, entry in enumerate(self.entries):
            bf16, fp8 = entry.memory("bf16"), entry.memory("fp8")
            fits = self.machine.fits(bf16) or self.machine.fits(fp8)
            fit_text = {True: "yes", False: "no", None: "?"}[fits]
            if fits and not self.machine.fits(bf16):
                fit_text = "fp8 only"
            cells = (entry.name, entry.dialect, _gib(entry.download_bytes()), _gib(bf16),
                     _gib(fp8), fit_text, "yes" if entry.id in cached else "")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{entry.id}: {entry.summary}")
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()

    def selected(self) -> catalogue.Entry | None:
        rows = self.table.selectionModel().selectedRows()
        return self.entries[rows[0].row()] if rows else None

    def select(self, model_id: str) -> None:
        for row, entry in enumerate(self.entries):
            if entry.id == model_id:
                self.table.selectRow(row)
                return
        self.table.clearSelection()

    def _selection_changed(self) -> None:
        entry = self.selected()
        if entry is not None:
            self.chosen.emit(entry.id)

    # --- downloading ------------------------------------------------------------------

    def start_download(self) -> None:
        entry = self.selected()
        if entry is None:
            self.status.setText("Choose a model in the table first.")
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._cancel.clear()
        self.download_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Downloading {entry.id}…")
        self._thread = threading.Thread(target=self._download, args=(entry.id,),
                                        name="catalogue-download", daemon=True)
        self._thread.start()

    def _download(self, model_id: str) -> None:
        try:
            folder = catalogue.download(model_id, progress=self._signals.progress.emit,
                                        cancel=self._cancel)
        except catalogue.DownloadError as e:
            self._signals.failed.emit(model_id, str(e))
        except Exception as e:  # the UI must hear of any failure, not a silent thread
            self._signals.failed.emit(model_id, f"{type(e).__name__}: {e}")
        else:
            self._signals.finished.emit(model_id, str(folder))

    def _on_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.download_progress.setValue(int(1000 * min(done, total) / total))
            self.download_progress.setFormat(f"{done / GIB:.2f} / {total / GIB:.2f} GB")

    def _on_finished(self, model_id: str, folder: str) -> None:
        self.download_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.setText(f"{model_id} is downloaded ({folder}).")
        self.refresh()
        self.select(model_id)

    def _on_failed(self, model_id: str, message: str) -> None:
        self.download_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.download_progress.setValue(0)
        self.download_progress.setFormat("")
        self.status.setText(message)
