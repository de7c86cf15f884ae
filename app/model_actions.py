"""The Model tab's behaviour: load a local model off the UI thread with progress and
the memory it took, detect its dialect, check a remote server (a mixin of app.controller).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from app.views.model_panel import detect_dialect, human_bytes
from app.worker import LoadWorker, start_in_thread


class ModelActions:
    """Needs from the host: window, settings, policy/policy_name/detected_dialect,
    served_dialect, loading, _save_settings, show_error, run_job."""

    def _model_settings_changed(self) -> None:
        values = self.window.model_panel.values()
        s = self.settings
        for key in ("backend", "model", "dialect", "device", "dtype", "remote_url",
                    "remote_model", "remote_api_key_env"):
            setattr(s, key, values[key])
        self._save_settings()

    def load_model(self, loader: Callable | None = None) -> LoadWorker | None:
        """Load the local model chosen in the model panel (or what `loader` returns)."""
        values = self.window.model_panel.values()
        model = values["model"]
        if loader is None:
            if not model:
                self.window.model_panel.set_load_failed("Choose a checkpoint folder or hub id.")
                return None
            device = None if values["device"] == "auto" else values["device"]
            dtype = None if values["dtype"] == "auto" else values["dtype"]

            def loader(progress):
                from agent.extras import import_local

                vlm = import_local("vlm", what=f"the local model {model!r}")
                return vlm.load(model, device=device, dtype=dtype, progress=progress)

        if self.loading:
            return None
        self._model_settings_changed()
        panel = self.window.model_panel
        panel.set_loading(True)
        self.loading = True
        self._loading_model = model
        worker = self._load_worker = LoadWorker(loader)  # referenced while it runs
        # bound methods of UI-thread objects: queued to the UI thread
        worker.model_loading_progress.connect(panel.set_progress)
        worker.loaded.connect(self._on_loaded)
        worker.error.connect(self._on_load_failed)
        start_in_thread(worker, self)
        return worker

    def _on_loaded(self, policy: Any, info: dict) -> None:

        self.loading = False
        self._load_worker = None
        model = self._loading_model
        self.policy = policy
        self.policy_name = getattr(policy, "name", "") or model
        config = getattr(policy, "config_dict", None)
        self.detected_dialect = detect_dialect(config) if config else None
        panel = self.window.model_panel
        panel.set_loading(False)
        if self.detected_dialect:
            panel.show_detected(self.detected_dialect)
        memory = human_bytes(info.get("memory_bytes", 0))
        description = (f"{self.policy_name} loaded in {info.get('seconds', 0):.1f} s · "
                       f"{memory} of {info.get('where', 'memory')}"
                       + (f" · dialect {self.detected_dialect}" if self.detected_dialect else ""))
        panel.set_loaded(description)
        self.window.model_status.setText(f"Model: {description}")

    def _on_load_failed(self, message: str) -> None:
        self.loading = False
        self._load_worker = None
        self.window.model_panel.set_loading(False)
        self.window.model_panel.set_load_failed(message)
        self.show_error(message)

    def check_connection(self) -> None:
        values = self.window.model_panel.values()
        url = values["remote_url"].rstrip("/")
        if not url.startswith(("http://", "https://")):
            self.window.model_panel.set_check_result(False, "Enter an http(s) URL.")
            return
        key = os.environ.get(values["remote_api_key_env"] or "")

        def check() -> str:
            import httpx

            headers = {"Authorization": f"Bearer {key}"} if key else {}
            response = httpx.get(f"{url}/models", headers=headers, timeout=5.0)
            response.raise_for_status()
            ids = [m.get("id", "?") for m in response.json().get("data", [])]
            return ids

        def checked(ids: list[str]) -> None:
            from agent.dialects import dialect_for_model_id

            dialects = {d for d in map(dialect_for_model_id, ids) if d}
            # one dialect for every listed model: "auto" can use it for this URL
            self.served_dialect = (url, dialects.pop()) if len(dialects) == 1 else None
            text = "Connected. Models: " + (", ".join(ids) if ids else "(none listed)")
            if self.served_dialect:
                text += f" · dialect {self.served_dialect[1]}"
            elif ids:
                text += " · dialect not known from the id: pick it"
            panel.set_check_result(True, text)

        panel = self.window.model_panel
        panel.set_check_result(True, "Connecting…")
        self.run_job(check, checked,
                     "The server did not answer",
                     on_failed=lambda message: panel.set_check_result(False, message))
