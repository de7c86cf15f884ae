"""The person's settings, shared by the app and the CLI, stored as one JSON file.

Location: `platformdirs.user_config_dir("deskpilot")/settings.json`, or the folder named by
DESKPILOT_CONFIG_DIR (tests, portable installs). A missing file means defaults; a file
that cannot be read is an error naming the file, never silently replaced, because it
holds choices the person made. Keys this version does not know are ignored (a newer
version may have written them). Saving writes a temporary file and renames it over the
old one, so a crash mid-save leaves the previous settings intact.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
CONFIG_DIR_ENV = "DESKPILOT_CONFIG_DIR"
STATE_DIR_ENV = "DESKPILOT_STATE_DIR"
LAST_RUN_FILE = "last_run"
APP_NAME = "deskpilot"
MAX_RECENT_TASKS = 20
DEFAULT_MAX_NEW_TOKENS = 512


class SettingsError(ValueError):
    """The settings file exists but cannot be used."""


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME))


def default_runs_dir() -> str:
    import platformdirs

    return str(Path(platformdirs.user_data_dir(APP_NAME)) / "runs")


def settings_path() -> Path:
    return config_dir() / "settings.json"


def state_dir() -> Path:
    """Where deskpilot remembers things between runs that are not settings (the last run).

    DESKPILOT_STATE_DIR, else the DESKPILOT_CONFIG_DIR override (so a test or a portable
    install keeps everything in one place), else platformdirs' user state folder."""
    override = os.environ.get(STATE_DIR_ENV) or os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME))


def remember_last_run(run_dir: str | os.PathLike) -> None:
    """Note `run_dir` as the newest run, wherever it was recorded (`--record DIR`), so
    "last" finds it. Best effort: failing to note it must never fail the run."""
    path = state_dir() / LAST_RUN_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".last-run-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(str(Path(run_dir).resolve()) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not remember the last run in %s: %s", path, exc)


def remembered_last_run() -> Path | None:
    """The run folder remember_last_run noted, if it still exists."""
    try:
        text = (state_dir() / LAST_RUN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = Path(text) if text else None
    return path if path is not None and path.is_dir() else None


@dataclass
class Settings:
    max_steps: int = 50
    # longest reply per step, in tokens; the app and `deskpilot run` both use it (UI-TARS
    # thoughts can be long: a shorter limit cuts the reply before its Action line)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    history_n: int = 5  # screenshots kept in the prompt
    max_pixels: int | None = None  # None: the dialect's default
    language: str = "English"  # language of the model's thoughts
    settle_timeout: float = 3.0  # seconds to wait for the screen to stop changing
    settle_threshold: float = 0.005  # share of pixels that may still change when settled
    safety: str = "normal"  # strict | normal | off
    # regexes (case-insensitive) for typed commands that need confirmation when submitted;
    # None: the built-in recogniser (agent/shell_commands.py); a list replaces it
    safety_command_patterns: list[str] | None = None
    stop_hotkey: str = "<ctrl>+<alt>+<shift>+s"  # pynput GlobalHotKeys syntax
    record: bool = True
    runs_dir: str = field(default_factory=default_runs_dir)
    monitor: str | int = "auto"  # "auto" (under the pointer / primary) or an index
    backend: str = "local"  # local | remote | replay
    model: str = ""  # local checkpoint folder or hub id
    dialect: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    remote_url: str = ""
    remote_model: str = ""
    remote_api_key_env: str = "DESKPILOT_API_KEY"  # the key itself is never stored
    recent_tasks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from agent.safety import LEVELS

        if self.safety not in LEVELS:
            raise SettingsError(f"safety must be one of {', '.join(LEVELS)}, got {self.safety!r}")
        if self.safety_command_patterns is not None:
            if not isinstance(self.safety_command_patterns, list) or not all(
                isinstance(p, str) for p in self.safety_command_patterns
            ):
                raise SettingsError("safety_command_patterns must be a list of regex strings")
            for pattern in self.safety_command_patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise SettingsError(
                        f"safety_command_patterns: invalid regex {pattern!r}: {exc}"
                    ) from exc
        if self.backend not in ("local", "remote", "replay"):
            raise SettingsError(f"backend must be local, remote or replay, got {self.backend!r}")
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise SettingsError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if (
            not isinstance(self.max_new_tokens, int)
            or isinstance(self.max_new_tokens, bool)
            or self.max_new_tokens < 1
        ):
            raise SettingsError(
                f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}"
            )
        if isinstance(self.monitor, str) and self.monitor != "auto":
            if not self.monitor.isdigit():
                raise SettingsError(f"monitor must be 'auto' or an index, got {self.monitor!r}")
            self.monitor = int(self.monitor)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Settings:
        """Settings from `path` (default: settings_path()); defaults when it does not exist."""
        path = Path(path) if path is not None else settings_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"settings file {path} is not valid JSON ({exc}); fix or delete it"
            ) from exc
        if not isinstance(data, dict):
            raise SettingsError(f"settings file {path} must hold a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (SettingsError, TypeError) as exc:
            raise SettingsError(f"settings file {path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write atomically (temp file in the same folder, fsync, rename)."""
        path = Path(path) if path is not None else settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def remember_task(self, task: str) -> None:
        """Put `task` first in recent_tasks (no duplicates, at most MAX_RECENT_TASKS)."""
        task = task.strip()
        if task:
            self.recent_tasks = [task] + [t for t in self.recent_tasks if t != task]
            del self.recent_tasks[MAX_RECENT_TASKS:]
