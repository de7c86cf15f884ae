"""The controller: connects the views to the agent runner, the model loader and the runs.

Everything slow (a run, loading a model, reading a recorded run's screenshots, export,
report, connection check) happens on a worker thread; the controller only starts the
work and reacts to its signals, so the UI thread never blocks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QProcess, QTimer

from app.demo_actions import DemoActions
from app.hiding import WindowHider
from app.model_actions import ModelActions
from app.practice_actions import open_practice_task
from app.runs_actions import RunsActions
from app.stepview import StepView, from_step
from app.views.dialogs import ConfirmDialog, ReplyDialog
from app.views.settings_dialog import SettingsDialog
from app.worker import LoadWorker, RunRequest, RunWorker, friendly_error, start_in_thread

log = logging.getLogger(__name__)


class Controller(RunsActions, ModelActions, DemoActions, QObject):
    """Owns the app's state: settings, the loaded policy, the current run.

    env_factory: builds the screen for a run (default: the real desktop, hiding this app
    during captures). Tests pass agent.memenv.MemoryEnv.
    """

    def __init__(self, window, settings, *, env_factory: Callable[[], Any] | None = None):
        super().__init__(window)
        self.window = window
        self.settings = settings
        self.env_factory = env_factory
        self.hider = WindowHider(parent=self)
        self.policy: Any = None  # loaded local engine (remote/replay policies are built per run)
        self.policy_name = ""
        self.detected_dialect: str | None = None
        # (server URL, dialect) judged from the ids "Check connection" listed
        self.served_dialect: tuple[str, str] | None = None
        self.worker: RunWorker | None = None
        self.views: list[StepView] = []
        self.last_run_dir: Path | None = None
        self.last_outcome = ""
        self.paused = False
        self.kill_switch = None
        self._env = None
        self._closing = False
        self._hid_window = False
        self.loading = False
        self._loading_model = ""
        self._load_worker: LoadWorker | None = None
        self._dialog = None
        self._demo: QProcess | None = None
        self._connect()
        self._apply_settings()

    # --- wiring -----------------------------------------------------------------------

    def _connect(self) -> None:
        w = self.window
        tp = w.task_panel
        tp.run_requested.connect(self.start_run)
        tp.pause_clicked.connect(self.pause)
        tp.resume_clicked.connect(self.resume)
        tp.stop_clicked.connect(self.stop)
        tp.record_clicked.connect(self.toggle_demo_recording)
        for source in (w.strip, w.tray):
            source.pause_clicked.connect(self.pause)
            source.resume_clicked.connect(self.resume)
            source.stop_clicked.connect(self.stop)
        w.strip.show_window_clicked.connect(self._show_window)
        w.tray.show_clicked.connect(self._show_window)
        w.timeline.step_selected.connect(self.inspect)
        w.runs.open_requested.connect(self.open_run)
        w.runs.replay_requested.connect(self.replay_run)
        w.runs.export_requested.connect(self.export_runs)
        w.runs.report_requested.connect(self.open_report)
        w.runs.finetune_requested.connect(self.finetune_runs)
        w.runs.refresh_requested.connect(self.refresh_runs)
        w.model_panel.load_requested.connect(self.load_model)
        w.model_panel.check_requested.connect(self.check_connection)
        w.model_panel.changed.connect(self._model_settings_changed)
        w.settings_action.triggered.connect(self.open_settings)
        w.sandbox_action.triggered.connect(self.launch_sandbox)
        w.welcome_action.triggered.connect(lambda: w.show_welcome(True))
        w.welcome.choose_local.connect(lambda: self._welcome_to_model("local"))
        w.welcome.choose_remote.connect(lambda: self._welcome_to_model("remote"))
        w.welcome.open_sandbox.connect(self.launch_sandbox)
        w.welcome.try_practice_task.connect(lambda: open_practice_task(self))
        w.welcome.dismissed.connect(lambda: w.show_welcome(False))
        w.close_guard = self._close_guard

    def _apply_settings(self) -> None:
        s = self.settings
        self.window.task_panel.set_recent(list(s.recent_tasks))
        self.window.model_panel.set_values(s)
        configured = bool(s.model) or (s.backend == "remote" and bool(s.remote_url))
        self.window.show_welcome(not configured)
        self.refresh_runs()

    def _save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            self.show_error(f"Could not save the settings: {exc}")

    def show_error(self, message: str) -> None:
        log.warning("%s", message)
        self.window.banner.show_error(message)

    # --- runs -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start_run(self, task: str, *, policy: Any = None, dialect: Any = None,
                  env: Any = None, backend: str | None = None, model: str | None = None) -> bool:
        """Start `task`; False (with the reason shown) when it cannot start."""
        task = task.strip()
        if self.running:
            self.show_error("A run is already in progress: stop it first.")
            return False
        if not task:
            self.show_error("Type a task first.")
            return False
        s = self.settings
        try:
            if policy is None:
                policy, backend, model = self._policy_for_run()
            if dialect is None:
                dialect = self._dialect(backend)
            if env is None:
                env = self.env_factory() if self.env_factory else self._desktop_env()
        except Exception as exc:  # missing model, no display, bad URL: say so in the window
            self.show_error(friendly_error(exc) if not isinstance(exc, RunSetupError) else str(exc))
            return False
        self._env = env
        if policy is not self.policy and (model or backend):
            self.window.model_status.setText(f"Model: {model or '?'} ({backend or s.backend})")
        request = RunRequest(
            task=task, policy=policy, env=env, dialect=dialect, max_steps=s.max_steps,
            max_new_tokens=s.max_new_tokens, safety=s.safety,
            command_patterns=s.safety_command_patterns,
            runs_dir=Path(s.runs_dir) if s.record else None,
            model=model or self.policy_name or s.model, backend=backend or s.backend,
            monitors=_monitors(env),
        )
        worker = RunWorker(request)
        worker.step_started.connect(self._on_step_started)
        worker.observed.connect(self.window.live.show_observation)
        worker.text_streamed.connect(self._on_text)
        worker.step_done.connect(self._on_step_done)
        worker.confirmation_needed.connect(self._on_confirmation_needed)
        worker.user_reply_needed.connect(self._on_user_reply_needed)
        worker.error.connect(self.show_error)
        worker.run_ended.connect(self._on_run_ended)
        self.worker = worker
        self.views = []
        self.paused = False
        self.window.banner.hide()
        self.window.timeline.clear_steps()
        self.window.live.clear()
        self.window.live.set_status("Starting…")
        self.window.task_panel.set_running(True)
        self.window.tray.set_state(running=True, paused=False)
        self.window.run_status.setText("running")
        self.window.show_tab(self.window.live)
        s.remember_task(task)
        self.window.task_panel.set_recent(s.recent_tasks)
        self._save_settings()
        self._start_kill_switch(env)
        if _is_desktop(env):
            # Out of the way of the screen being driven; the strip stays reachable.
            self._hid_window = self.window.isVisible()
            self.window.hide()
            self.window.strip.set_paused(False)
            self.window.strip.set_status(f"Starting: {task}")
            self.window.strip.place()
            self.window.strip.show()
        self._thread = start_in_thread(worker, self)
        return True

    def _policy_for_run(self) -> tuple[Any, str, str]:
        values = self.window.model_panel.values()
        backend = values["backend"]
        if backend == "local":
            if self.policy is None:
                raise RunSetupError("No model is loaded: choose one in the Model tab and press "
                                    "Load model (or use a remote server).")
            return self.policy, "local", self.policy_name
        if backend == "remote":
            url = values["remote_url"]
            if not url.startswith(("http://", "https://")):
                raise RunSetupError("Enter the server's http(s) URL in the Model tab first.")
            from agent.remote import RemotePolicy

            key = os.environ.get(values["remote_api_key_env"] or "") or None
            return RemotePolicy(url, model=values["remote_model"], api_key=key), "remote", url
        run = values["replay_run"]
        if not run:
            raise RunSetupError("Choose a recorded run to replay in the Model tab.")
        from agent.trajectory import ReplayPolicy

        return ReplayPolicy(run), "replay", run

    def _dialect(self, backend: str | None) -> Any:
        from agent.dialects import get_dialect

        s = self.settings
        name = self.window.model_panel.values()["dialect"] or s.dialect
        if name == "auto" and backend == "remote":
            name = self._served_dialect()
        elif name == "auto":
            name = self.detected_dialect
        if not name and backend == "replay":
            from agent.trajectory import load_run

            name = load_run(self.window.model_panel.values()["replay_run"]).meta.get("dialect")
        if not name:
            raise RunSetupError("The model's dialect is unknown: pick one in the Model tab.")
        return get_dialect(name, history_n=s.history_n, max_pixels=s.max_pixels,
                           language=s.language)

    def _served_dialect(self) -> str:
        """The remote model's dialect from its id: the Model field's, else the ones the
        last "Check connection" of this URL listed. Never a guess (UI-TARS or otherwise)."""
        from agent.dialects import dialect_for_model_id

        values = self.window.model_panel.values()
        if values["remote_model"]:
            name = dialect_for_model_id(values["remote_model"])
            if name:
                return name
            raise RunSetupError(
                f"Cannot tell which dialect the model {values['remote_model']!r} speaks: "
                "pick the dialect in the Model tab.")
        url = values["remote_url"].rstrip("/")
        if self.served_dialect and self.served_dialect[0] == url:
            return self.served_dialect[1]
        raise RunSetupError(
            "Cannot tell which dialect the server's model speaks: press “Check connection”, "
            "name the model, or pick the dialect in the Model tab.")

    def _desktop_env(self) -> Any:
        from agent.desktop import DesktopEnv

        s = self.settings
        return DesktopEnv(monitor=s.monitor, settle_timeout=s.settle_timeout,
                          settle_threshold=s.settle_threshold,
                          hide_windows=self.hider.hide_windows,
                          before_action=self.hider.keep_clear,
                          settle_hiding=self.hider.settling)

    def _start_kill_switch(self, env: Any) -> None:
        if not _is_desktop(env):
            return
        try:
            from agent.desktop import KillSwitch

            self.kill_switch = KillSwitch(self.settings.stop_hotkey, on_stop=self._hotkey_stop)
            self.kill_switch.start()
        except Exception as exc:  # the buttons still work; say the hotkey does not
            self.kill_switch = None
            self.show_error(f"The stop hotkey is not available ({exc}); use the Stop button.")

    def _hotkey_stop(self) -> None:
        """Called on the hotkey listener's thread: only thread-safe calls here."""
        worker, env = self.worker, self._env
        if worker is not None:
            worker.stop()
        if env is not None and hasattr(env, "interrupt"):
            env.interrupt()

    def pause(self) -> None:
        if self.worker is None or self.paused:
            return
        self.worker.pause()
        self._set_paused(True)

    def resume(self) -> None:
        if self.worker is None or not self.paused:
            return
        self.worker.resume()
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        w = self.window
        w.task_panel.set_paused(paused)
        w.strip.set_paused(paused)
        w.tray.set_state(running=True, paused=paused)
        text = "paused (after this step)" if paused else "running"
        w.run_status.setText(text)
        w.live.set_status("Paused — the agent waits before its next step" if paused
                          else w.live.status.text())

    def stop(self) -> None:
        if self.worker is None:
            self.stop_demo_recording()
            return
        self.worker.stop()
        if self._env is not None and hasattr(self._env, "interrupt"):
            self._env.interrupt()
        if self._dialog is not None:
            self._dialog.close()
        self.window.run_status.setText("stopping…")
        self.window.live.set_status("Stopping — the run ends before its next action")

    # --- worker signals ---------------------------------------------------------------

    def _on_step_started(self, index: int) -> None:
        self.window.live.begin_step(index)
        self.window.strip.set_status(f"Step {index + 1} · looking at the screen…")

    def _on_text(self, text: str) -> None:
        self.window.live.append_text(text)
        tail = self.window.live.thought.toPlainText()[-120:]
        self.window.strip.set_status(tail)

    def _on_step_done(self, step: Any) -> None:
        view = from_step(step)
        self.views.append(view)
        self.window.timeline.add_step(view)
        self.window.live.show_step(view)

    def _on_confirmation_needed(self, action: Any, reason: str) -> None:
        dialog = ConfirmDialog(action, reason, self.window)
        dialog.answered.connect(self._answer_confirmation)
        self._show_dialog(dialog)

    def _on_user_reply_needed(self, question: str) -> None:
        dialog = ReplyDialog(question, self.window)
        dialog.answered.connect(self._answer_user)
        self.window.tray.notify("deskpilot needs you", question)
        self._show_dialog(dialog)

    def _answer_confirmation(self, allowed: bool) -> None:
        if self.worker is not None:  # a dialog closed after its run ended answers no one
            self.worker.answer_confirmation(allowed)

    def _answer_user(self, text: str | None) -> None:
        if self.worker is not None:
            self.worker.answer_user(text)

    def _show_dialog(self, dialog) -> None:
        self._dialog = dialog
        dialog.finished.connect(lambda *_: setattr(self, "_dialog", None))
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _on_run_ended(self, outcome: str, message: str, run_dir: str) -> None:
        self.worker = None
        self._env = None
        self.last_outcome = outcome
        self.last_run_dir = Path(run_dir) if run_dir else None
        if self.kill_switch is not None:
            try:
                self.kill_switch.stop()
            except Exception as exc:
                log.warning("could not stop the hotkey listener: %s", exc)
            self.kill_switch = None
        if self._dialog is not None:
            self._dialog.close()
        w = self.window
        w.strip.hide()
        w.task_panel.set_running(False)
        w.tray.set_state(running=False, paused=False)
        w.run_status.setText(f"last run: {outcome}")
        summary = f"Run ended: {outcome}" + (f" — {message}" if message else "")
        w.live.set_status(summary)
        w.tray.notify("deskpilot", summary)
        if outcome == "error" and message:
            self.show_error(message)
        self.refresh_runs()
        if self.last_run_dir is not None:
            w.runs.select(self.last_run_dir)
        if self._closing:
            QTimer.singleShot(0, w.close)
            return
        if self._hid_window:
            self._hid_window = False
            self._show_window()

    def _show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings, self.window)
        dialog.accepted.connect(self._settings_saved)
        dialog.open()
        return dialog

    def _settings_saved(self) -> None:
        self._save_settings()
        self.refresh_runs()

    def _welcome_to_model(self, backend: str) -> None:
        panel = self.window.model_panel
        panel.backend.setCurrentIndex(max(0, panel.backend.findData(backend)))
        self.window.show_tab(panel)

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """The application is quitting (not through the window): end the run and let its
        thread finish, so the trajectory is finished and no running QThread is destroyed.

        Never blocks on the worker: this thread keeps serving events (the worker may be
        waiting for windows to hide) while it waits, in short slices. True once the run's
        thread has ended."""
        worker, thread = self.worker, getattr(self, "_thread", None)
        self.hider.close()  # from now on no worker waits for this thread
        if worker is None or thread is None:
            return True
        worker.stop()
        if self._env is not None and hasattr(self._env, "interrupt"):
            self._env.interrupt()
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            try:
                if thread.wait(20):  # a 20 ms slice; then the event loop runs again
                    return True
            except RuntimeError:  # the finished thread was already deleted
                return True
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        log.error("the run did not stop within %.0f s", timeout_ms / 1000)
        return False

    def _close_guard(self) -> bool:
        """Closing during a run: stop it, keep the window until its trajectory is written."""
        if self.worker is None:
            self.stop_demo_recording()
            return True
        self._closing = True
        self.stop()
        self.window.hide()
        return False

class RunSetupError(RuntimeError):
    """A run cannot start; the message tells the person what to do."""


def _is_desktop(env: Any) -> bool:
    """A run on the real screen (the app must get out of its way), not an in-memory one."""
    from agent.desktop import DesktopEnv  # light: OS libraries load only when used

    return isinstance(env, DesktopEnv)


def _monitors(env: Any) -> list[dict]:
    getter = getattr(env, "monitors", None)
    if getter is None:
        return []
    try:
        monitors = getter() if callable(getter) else getter
    except Exception as exc:  # a monitor query failing must not stop the run
        log.warning("cannot list monitors: %s", exc)
        return []
    return [m.to_dict() if hasattr(m, "to_dict") else dict(m) for m in monitors]
