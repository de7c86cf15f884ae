"""The Runs tab's behaviour: list recorded runs, open one in the inspector, replay,
export and report — each slow part on a worker thread (a mixin of app.controller).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QInputDialog

from app.stepview import StepView, from_record
from app.worker import JobHandle, friendly_error, start_job

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("llamafactory", "swift", "qwenvl", "uitars")


class RunsActions:
    """Needs from the host: window, settings, views, show_error, start_run."""

    def inspect(self, view: StepView) -> None:
        self.window.inspector.show_step(view)
        self.window.show_tab(self.window.inspector)

    def refresh_runs(self) -> None:
        from agent.trajectory import list_runs

        folder = Path(self.settings.runs_dir)
        try:
            summaries = list_runs(folder)
        except OSError as exc:
            self.show_error(f"Cannot list the runs in {folder}: {exc}")
            summaries = []
        self.window.runs.set_runs(summaries, folder)

    def open_run(self, path: Path) -> None:
        """Load a recorded run's steps (and screenshots) off the UI thread, then show them."""

        def load() -> tuple[Any, list[StepView]]:
            from agent.trajectory import load_run

            run = load_run(path)
            views = []
            for record in run.steps:
                try:
                    image = run.image(record)
                except (OSError, KeyError) as exc:
                    log.warning("step %s has no screenshot: %s", record.get("index"), exc)
                    image = None
                views.append(from_record(record, image))
            return run, views

        def show(result: tuple[Any, list[StepView]]) -> None:
            run, views = result
            self.views = views
            timeline = self.window.timeline
            timeline.clear_steps()
            for view in views:
                timeline.add_step(view)
            self.window.live.set_status(f"Recorded run: {run.task} ({run.outcome})")
            if views:
                self.window.live.show_step(views[-1])
                self.inspect(views[0])
            else:
                self.show_error(f"The run {run.path.name} has no recorded steps.")
            for warning in run.warnings:
                log.info("%s", warning)

        self.run_job(load, show, "Could not open the run")

    def replay_run(self, path: Path) -> None:
        """Re-run a recorded run's replies on the live screen, as a new run."""
        try:
            from agent.dialects import get_dialect
            from agent.trajectory import ReplayPolicy, load_run

            run = load_run(path)
            policy = ReplayPolicy(path)
            s = self.settings
            dialect = get_dialect(run.meta.get("dialect") or "uitars-1.5", history_n=s.history_n,
                                  max_pixels=s.max_pixels, language=s.language)
        except Exception as exc:
            self.show_error(f"Cannot replay {Path(path).name}: {friendly_error(exc)}")
            return
        self.start_run(run.task or "replay", policy=policy, dialect=dialect,
                       backend="replay", model=str(path))

    def export_runs(self, paths: list[Path], fmt: str | None = None,
                    out_dir: str | None = None) -> None:
        if fmt is None:
            fmt, ok = QInputDialog.getItem(self.window, "Export runs", "Training data format",
                                           list(EXPORT_FORMATS), 0, False)
            if not ok:
                return
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self.window, "Export to folder")
            if not out_dir:
                return

        def export():
            from agent.trajectory import export_runs

            return export_runs(list(paths), fmt, out_dir)

        def done(_result) -> None:
            self.window.live.set_status(f"Exported {len(paths)} run(s) as {fmt} to {out_dir}")
            self.window.statusBar().showMessage(f"Exported {len(paths)} run(s) to {out_dir}", 8000)

        self.run_job(export, done, "Export failed")

    def finetune_runs(self, paths: list[Path], *, show: bool = True):
        """Open the fine-tune dialog on these runs; its result can become the current model."""
        from app.views.finetune_dialog import FineTuneDialog, default_out_dir

        base = self.window.model_panel.values()["model"] or self.settings.model
        dialog = FineTuneDialog(list(paths), base, default_out_dir(self.settings.runs_dir),
                                self.window)
        dialog.load_requested.connect(self.load_finetuned)
        self._finetune_dialog = dialog  # kept while open: it owns the training job
        if show:
            dialog.show()
        return dialog

    def load_finetuned(self, folder: str) -> None:
        panel = self.window.model_panel
        panel.backend.setCurrentIndex(max(0, panel.backend.findData("local")))
        panel.model.setCurrentText(folder)
        self.window.show_tab(panel)
        self.load_model()

    def open_report(self, path: Path, out_html: str | None = None, open_it: bool = True) -> None:
        out = out_html or os.path.join(tempfile.gettempdir(), f"deskpilot-{Path(path).name}.html")

        def write():
            from agent.trajectory import write_report

            write_report(path, out)
            return out

        def done(result: str) -> None:
            self.window.statusBar().showMessage(f"Report written to {result}", 8000)
            if open_it:
                QDesktopServices.openUrl(QUrl.fromLocalFile(result))

        self.run_job(write, done, "Could not write the report")

    def run_job(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
                failure: str, on_failed: Callable[[str], None] | None = None) -> JobHandle:
        """Run `fn` off the UI thread; `on_done(result)` runs back on the UI thread."""

        def failed(message: str) -> None:
            self.show_error(f"{failure}: {message}")
            if on_failed is not None:
                on_failed(message)

        return start_job(fn, on_done, failed, self)
