""""Fine-tune on selected runs…": the plan, training on a worker thread, the loss curve.

The dialog shows `deskpilot train plan`'s estimate for the chosen base and method before
anything runs, trains through train.sft (the same code as `deskpilot train sft`) on a
worker thread, draws the loss after every optimizer step, and stops cleanly: Stop makes
the next step raise KeyboardInterrupt inside the loop, which saves a resumable checkpoint.
When training ends it offers to load the merged checkpoint as the current model.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QPointF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.worker import friendly_error


class LossCurve(QWidget):
    """Loss per optimizer step as a polyline, scaled to the widget."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.losses: list[float] = []
        self.setMinimumHeight(120)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(420, 140)

    def add(self, loss: float) -> None:
        self.losses.append(float(loss))
        self.update()

    def clear(self) -> None:
        self.losses.clear()
        self.update()

    def points(self) -> list[QPointF]:
        if not self.losses:
            return []
        w, h = max(1, self.width() - 8), max(1, self.height() - 8)
        lo, hi = min(self.losses), max(self.losses)
        span = (hi - lo) or 1.0
        n = max(1, len(self.losses) - 1)
        return [QPointF(4 + w * i / n, 4 + h * (1 - (v - lo) / span))
                for i, v in enumerate(self.losses)]

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#14151d"))
        points = self.points()
        if len(points) >= 2:
            painter.setPen(QPen(QColor("#7c5cff"), 2))
            painter.drawPolyline(points)
        painter.setPen(QColor("#8b90a5"))
        if self.losses:
            painter.drawText(8, 16, f"loss {self.losses[-1]:.4f}  (step {len(self.losses)})")
        else:
            painter.drawText(8, 16, "loss: no steps yet")
        painter.end()


class _Progress(QObject):
    """Signals from the training thread, delivered queued on the GUI thread."""

    step = Signal(dict)  # one train_log.jsonl record
    done = Signal(dict)  # run_sft's summary
    failed = Signal(str)


def default_out_dir(runs_dir: str | Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(runs_dir).expanduser().parent / "finetunes" / stamp


class FineTuneDialog(QDialog):
    """`load_requested(merged_folder)` when the person asks to use the trained model."""

    load_requested = Signal(str)

    def __init__(self, runs: list[Path], base: str, out_dir: Path,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune on selected runs")
        self.runs = [Path(r) for r in runs]
        self.result: dict | None = None
        self._stop = threading.Event()
        self._job = None
        self._progress = _Progress()
        self._progress.step.connect(self._on_step, Qt.ConnectionType.QueuedConnection)
        self._progress.done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)
        self._progress.failed.connect(self._on_failed, Qt.ConnectionType.QueuedConnection)

        self.base = QLineEdit(base)
        self.base.setPlaceholderText("checkpoint folder or hub id")
        self.method = QComboBox()
        self.method.addItem("LoRA adapters (light, the default)", "lora")
        self.method.addItem("Full fine-tuning (every weight)", "full")
        self.rank = QSpinBox()
        self.rank.setRange(1, 512)
        self.rank.setValue(16)
        self.steps = QSpinBox()
        self.steps.setRange(0, 1_000_000)
        self.steps.setSpecialValueText("auto (3 epochs)")
        self.device = QComboBox()
        self.device.addItems(["auto", "cuda", "cpu"])
        self.grad_ckpt = QCheckBox("gradient checkpointing (less memory, ~30% slower)")
        self.merge = QCheckBox("also write a merged checkpoint (needed to load it here)")
        self.merge.setChecked(True)
        self.out = QLineEdit(str(out_dir))
        self.plan = QPlainTextEdit()
        self.plan.setReadOnly(True)
        self.plan.setFont(QFont("monospace", 9))
        self.plan.setMinimumHeight(150)
        self.curve = LossCurve()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status = QLabel(f"{len(self.runs)} run(s) selected.")
        self.status.setWordWrap(True)
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("primary")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.load_button = QPushButton("Load as current model")
        self.load_button.setEnabled(False)
        close = QPushButton("Close")

        form = QFormLayout()
        form.addRow("Base model", self.base)
        form.addRow("Method", self.method)
        form.addRow("LoRA rank", self.rank)
        form.addRow("Steps", self.steps)
        form.addRow("Device", self.device)
        form.addRow("", self.grad_ckpt)
        form.addRow("", self.merge)
        form.addRow("Output folder", self.out)
        buttons = QHBoxLayout()
        for b in (self.train_button, self.stop_button, self.load_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Memory plan (deskpilot train plan):"))
        layout.addWidget(self.plan)
        layout.addWidget(self.curve)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

        for w in (self.base,):
            w.editingFinished.connect(self.update_plan)
        for combo in (self.method, self.device):
            combo.currentIndexChanged.connect(self.update_plan)
        self.rank.valueChanged.connect(self.update_plan)
        self.grad_ckpt.toggled.connect(self.update_plan)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.train_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.load_button.clicked.connect(self._load)
        close.clicked.connect(self.close)
        self.update_plan()

    # --- the plan ---------------------------------------------------------------------

    def _method_changed(self) -> None:
        full = self.method.currentData() == "full"
        self.rank.setEnabled(not full)
        self.merge.setEnabled(not full)  # a full fine-tune always writes merged/

    def update_plan(self) -> None:
        from train.plan import (
            PlanError,
            count_parameters,
            detect_available_memory,
            format_plan,
            plan_memory,
        )

        try:
            count, config = count_parameters(self.base.text().strip())
        except PlanError as exc:
            self.plan.setPlainText(f"No plan: {exc}")
            return
        available, source = detect_available_memory()
        plan = plan_memory(count, config, mode=self.method.currentData(),
                           lora_rank=self.rank.value(), tokens=16384,
                           grad_checkpointing=self.grad_ckpt.isChecked(),
                           dtype="bf16" if available is not None else "fp32",
                           available_bytes=available)
        self.plan.setPlainText(f"memory: {source}\n{format_plan(plan)}")

    # --- training ---------------------------------------------------------------------

    def options(self):
        from train.sft import SftOptions

        full = self.method.currentData() == "full"
        return SftOptions(
            inputs=[str(r) for r in self.runs], base=self.base.text().strip(),
            out=self.out.text().strip(), lora_rank=None if full else self.rank.value(),
            full=full, merge=full or self.merge.isChecked(),
            steps=self.steps.value() or None, device=self.device.currentText(),
            grad_checkpointing=self.grad_ckpt.isChecked())

    def start(self) -> None:
        if self._job is not None:
            return
        try:
            opts = self.options()
        except ImportError as exc:
            self.status.setText(f"Training needs the local extra: {exc}")
            return
        self._stop.clear()
        self.curve.clear()
        self.bar.setRange(0, 0)  # busy until the first step says how many there are
        self.train_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.load_button.setEnabled(False)
        self.status.setText("Loading the base model and the runs…")

        def on_step(record: dict) -> None:  # on the worker thread
            self._progress.step.emit(dict(record))
            if self._stop.is_set():
                raise KeyboardInterrupt  # the loop saves a checkpoint, then stops

        def work() -> None:  # a plain Python thread: no Qt object lives or dies on it
            try:
                from train.sft import run_sft

                summary = run_sft(opts, on_step=on_step)
            except Exception as exc:  # reported in the dialog, never a silent thread
                self._progress.failed.emit(friendly_error(exc))
            else:
                self._progress.done.emit(dict(summary))

        self._job = threading.Thread(target=work, name="fine-tune", daemon=True)
        self._job.start()

    def stop(self) -> None:
        self._stop.set()
        self.stop_button.setEnabled(False)
        self.status.setText("Stopping after this step (a checkpoint is saved)…")

    def _on_step(self, record: dict) -> None:
        total = int(record.get("total_steps") or 0)
        step = int(record.get("step", len(self.curve.losses) + 1))
        if total:
            self.bar.setRange(0, total)
            self.bar.setValue(min(step, total))
        self.curve.add(float(record["loss"]))
        tps = record.get("tokens_per_s")
        self.status.setText(f"step {step}/{total or '?'} · loss {record['loss']:.4f}"
                            + (f" · {tps:.0f} tokens/s" if tps else ""))

    def _on_done(self, summary: dict) -> None:
        self._job = None
        self.result = summary
        self.train_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        merged = summary.get("merged")
        self.load_button.setEnabled(bool(merged))
        where = merged or summary.get("adapter") or summary.get("out")
        self.status.setText(f"Trained {summary.get('steps')} steps, last loss "
                            f"{summary.get('last_loss')}: {where}")

    def _on_failed(self, message: str) -> None:
        self._job = None
        self.train_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        if "Interrupted" in message or "interrupted" in message:
            self.status.setText(f"Stopped: {message}. Train again with the same options "
                                f"and folder to resume (`deskpilot train sft ... --resume`).")
        else:
            self.status.setText(f"Training failed: {message}")

    def _load(self) -> None:
        if self.result and self.result.get("merged"):
            self.load_requested.emit(self.result["merged"])
            self.accept()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._job is not None:
            self.stop()  # the worker finishes its step and saves; nothing is lost
        super().closeEvent(event)

