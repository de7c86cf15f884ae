"""The model panel: choose a backend and model, detect its dialect, load it with progress."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.views.catalogue_view import CatalogueView

log = logging.getLogger(__name__)

BACKENDS = {
    "local": "Local model (this computer's GPU)",
    "remote": "Remote server (OpenAI-compatible)",
    "replay": "Replay a recorded run",
}
DEVICES = ["auto", "cuda", "cpu"]
DTYPES = ["auto", "bfloat16", "float16", "float32"]


def dialect_names() -> list[str]:
    try:
        from agent.dialects import DIALECT_NAMES
    except ImportError:  # dialects not importable: still let a person pick "auto"
        return []
    return list(DIALECT_NAMES)


def read_checkpoint_config(model: str) -> dict | None:
    """config.json of a local checkpoint folder or of a hub id already in the local cache.

    Never touches the network: detection must be instant and work offline."""
    if not model:
        return None
    path = Path(model).expanduser()
    config = path / "config.json" if path.is_dir() else None
    if config is None or not config.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        try:
            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # not a valid repo id: nothing to detect
            return None
        if not isinstance(cached, str):
            return None
        config = Path(cached)
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", config, exc)
        return None
    return data if isinstance(data, dict) else None


def detect_dialect(config: dict | None) -> str | None:
    if not config:
        return None
    try:
        from agent.dialects import dialect_for_checkpoint

        return dialect_for_checkpoint(config)
    except (ImportError, ValueError, KeyError) as exc:
        log.info("no dialect for this checkpoint: %s", exc)
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class ModelPanel(QWidget):
    load_requested = Signal()
    check_requested = Signal()
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = QComboBox()
        for key, label in BACKENDS.items():
            self.backend.addItem(label, key)

        # local: the catalogue of known checkpoints, or any folder / hub id typed in
        self.catalogue = CatalogueView()
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems([entry.id for entry in self.catalogue.entries])
        self.model.setCurrentText("")
        self.model.lineEdit().setPlaceholderText("checkpoint folder or hub id")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse_model)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        self.dialect = QComboBox()
        self.dialect.addItem("auto (from the checkpoint)", "auto")
        for name in dialect_names():
            self.dialect.addItem(name, name)
        self.detected = QLabel()
        self.detected.setObjectName("muted")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.load_button = QPushButton("Load model")
        self.load_button.setObjectName("primary")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.load_status = QLabel("No model loaded.")
        self.load_status.setWordWrap(True)
        local = QWidget()
        lf = QFormLayout(local)
        lf.addRow("Catalogue", self.catalogue)
        lf.addRow("Model", model_row)
        lf.addRow("Dialect", self.dialect)
        lf.addRow("", self.detected)
        lf.addRow("Device", self.device)
        lf.addRow("Dtype", self.dtype)
        lf.addRow("", self.load_button)
        lf.addRow("", self.progress)
        lf.addRow("", self.load_status)

        # remote
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://localhost:8000/v1")
        self.remote_model = QLineEdit()
        self.remote_model.setPlaceholderText("model name on the server (optional)")
        self.api_key_env = QLineEdit()
        self.check_button = QPushButton("Check connection")
        self.check_status = QLabel("")
        self.check_status.setWordWrap(True)
        remote = QWidget()
        rf = QFormLayout(remote)
        rf.addRow("Server URL", self.url)
        rf.addRow("Model", self.remote_model)
        rf.addRow("API key env var", self.api_key_env)
        rf.addRow("Dialect", self._remote_dialect())
        rf.addRow("", self.check_button)
        rf.addRow("", self.check_status)

        # replay
        self.replay_run = QLineEdit()
        self.replay_run.setPlaceholderText("a recorded run folder")
        browse_run = QPushButton("Folder…")
        browse_run.clicked.connect(self._browse_run)
        replay = QWidget()
        pf = QFormLayout(replay)
        row = QHBoxLayout()
        row.addWidget(self.replay_run, 1)
        row.addWidget(browse_run)
        pf.addRow("Run", row)
        pf.addRow("", QLabel("The run's recorded replies are played back on the live screen."))

        self.pages = QStackedWidget()
        self.pages.addWidget(local)
        self.pages.addWidget(remote)
        self.pages.addWidget(replay)

        title = QLabel("Model")
        title.setObjectName("title")
        self.setMaximumWidth(860)  # a form, not a spreadsheet: keep lines readable
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        form = QFormLayout()
        form.addRow("Backend", self.backend)
        layout.addLayout(form)
        layout.addWidget(self.pages)
        layout.addStretch(1)

        self.backend.currentIndexChanged.connect(self._backend_changed)
        self.model.currentTextChanged.connect(self._model_changed)
        self.catalogue.chosen.connect(self.model.setCurrentText)
        self.load_button.clicked.connect(self.load_requested)
        self.check_button.clicked.connect(self.check_requested)
        for combo in (self.dialect, self.device, self.dtype):
            combo.currentIndexChanged.connect(self.changed)
        for edit in (self.url, self.remote_model, self.api_key_env, self.replay_run):
            edit.editingFinished.connect(self.changed)

    def _remote_dialect(self) -> QComboBox:
        """A server has no config.json to read: "auto" judges the dialect from the served
        model's id (the Model field, or the ids "Check connection" lists); or pick one."""
        self.remote_dialect = QComboBox()
        self.remote_dialect.addItem("auto (from the served model's id)", "auto")
        for name in dialect_names():
            self.remote_dialect.addItem(name, name)
        self.remote_dialect.currentIndexChanged.connect(self.changed)
        return self.remote_dialect

    def _backend_changed(self) -> None:
        self.pages.setCurrentIndex(self.backend.currentIndex())
        self.changed.emit()

    def _browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Checkpoint folder")
        if folder:
            self.model.setCurrentText(folder)

    def _browse_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Recorded run")
        if folder:
            self.replay_run.setText(folder)
            self.changed.emit()

    def _model_changed(self, text: str) -> None:
        self.catalogue.select(text.strip())
        self.show_detected(detect_dialect(read_checkpoint_config(text.strip())))
        self.changed.emit()

    def show_detected(self, dialect: str | None) -> None:
        if dialect:
            self.detected.setText(f"detected from config.json: {dialect}")
        elif self.model.currentText().strip():
            self.detected.setText("config.json not found yet: detected when the model loads")
        else:
            self.detected.setText("")

    # --- values <-> settings -----------------------------------------------------------

    def values(self) -> dict:
        backend = self.backend.currentData()
        dialect = self.dialect.currentData() if backend == "local" else (
            self.remote_dialect.currentData() or "auto")
        return {
            "backend": backend,
            "model": self.model.currentText().strip(),
            "dialect": dialect if backend != "replay" else "auto",
            "device": self.device.currentText(),
            "dtype": self.dtype.currentText(),
            "remote_url": self.url.text().strip(),
            "remote_model": self.remote_model.text().strip(),
            "remote_api_key_env": self.api_key_env.text().strip(),
            "replay_run": self.replay_run.text().strip(),
        }

    def set_values(self, settings) -> None:
        for w in (self.backend, self.model, self.dialect, self.device, self.dtype):
            w.blockSignals(True)
        try:
            index = self.backend.findData(settings.backend)
            self.backend.setCurrentIndex(max(0, index))
            self.pages.setCurrentIndex(max(0, index))
            self.model.setCurrentText(settings.model)
            self.show_detected(detect_dialect(read_checkpoint_config(settings.model)))
            for combo in (self.dialect, self.remote_dialect):
                i = combo.findData(settings.dialect)
                if i >= 0:
                    combo.setCurrentIndex(i)
            self.device.setCurrentText(settings.device)
            self.dtype.setCurrentText(settings.dtype)
            self.url.setText(settings.remote_url)
            self.remote_model.setText(settings.remote_model)
            self.api_key_env.setText(settings.remote_api_key_env)
        finally:
            for w in (self.backend, self.model, self.dialect, self.device, self.dtype):
                w.blockSignals(False)

    # --- loading state -----------------------------------------------------------------

    def set_loading(self, loading: bool) -> None:
        self.load_button.setEnabled(not loading)
        self.backend.setEnabled(not loading)
        if loading:
            self.progress.setValue(0)
            self.progress.setFormat("reading weights…")
            self.load_status.setText("Loading…")

    def set_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setValue(int(1000 * min(done, total) / total))
            self.progress.setFormat(f"{human_bytes(done)} / {human_bytes(total)}")

    def set_loaded(self, description: str) -> None:
        self.progress.setValue(1000)
        self.progress.setFormat("loaded")
        self.load_status.setText(description)

    def set_load_failed(self, message: str) -> None:
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.load_status.setText(f"<span style='color:#ff8fa3'>{html.escape(message)}</span>")

    def set_check_result(self, ok: bool, message: str) -> None:
        color = "#22c48a" if ok else "#ff8fa3"
        self.check_status.setText(f"<span style='color:{color}'>{html.escape(message)}</span>")
