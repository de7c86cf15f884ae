"""Read run folders back: one run in full (`load_run`), or a listing (`list_runs`).

Loading is forgiving exactly where a crash can leave damage and strict everywhere else:
a last steps.jsonl line cut short by a kill is skipped with a warning (the recorder
fsyncs each finished line, so only the line being written can be partial); any other
malformed line, an unknown format version, or a folder without meta.json is a
`FormatError` that names the file and what is wrong.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.frames import Frame
from agent.trajectory import schema

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

RUNNING = "running"


class FormatError(ValueError):
    """A folder that is not a readable deskpilot run (the message says why)."""


@dataclass
class Run:
    """One recorded run: `meta` (meta.json) and `steps` (steps.jsonl records, in order)."""

    path: Path
    meta: dict
    steps: list[dict]
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def task(self) -> str:
        return self.meta.get("task", "")

    @property
    def outcome(self) -> str:
        """The recorded outcome; "running" means the process died before finishing."""
        return self.meta.get("outcome") or RUNNING

    @property
    def interrupted(self) -> bool:
        return self.outcome == RUNNING

    def frame(self, step: dict) -> Frame:
        return Frame.from_dict(step["frame"])

    def file(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"run {self.path} has no file {name!r} (deleted or moved?)")
        return path

    def image(self, step: dict) -> Image:
        """The step's captured screenshot (physical pixels), loaded into memory."""
        return self._open(step["screenshot"])

    def model_image(self, step: dict) -> Image:
        """The resized image the model was shown at this step."""
        name = step.get("model_image")
        if not name:
            raise FileNotFoundError(f"step {step.get('index')} of {self.path} has no model image")
        return self._open(name)

    def _open(self, name: str) -> Image:
        from PIL import Image as PILImage

        with PILImage.open(self.file(name)) as im:
            im.load()
            return im


@dataclass(frozen=True)
class RunSummary:
    """What a run list shows, read cheaply (meta.json and a line count)."""

    path: Path
    task: str
    started_at: float | None
    ended_at: float | None
    outcome: str
    steps: int
    dialect: str
    model: str
    error: str | None = None  # why the run could not be read, if it could not


def _read_meta(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"no such run folder: {path}")
    if not path.is_dir():
        raise FormatError(f"{path} is a file, not a run folder")
    meta_path = path / schema.META_FILE
    if not meta_path.is_file():
        raise FormatError(
            f"{path} is not a deskpilot run folder: it has no {schema.META_FILE} "
            f"(expected {schema.META_FILE}, {schema.STEPS_FILE} and step_NNNN.png files)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise FormatError(f"{meta_path} must hold a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if version not in schema.SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in schema.SUPPORTED_VERSIONS)
        raise FormatError(
            f"{meta_path} has format_version {version!r}, which this deskpilot cannot read "
            f"(supported: {supported}); it was written by deskpilot "
            f"{meta.get('app_version', 'of unknown version')}"
        )
    return meta


def _read_steps(path: Path) -> tuple[list[dict], list[str]]:
    steps_path = path / schema.STEPS_FILE
    if not steps_path.exists():
        return [], []  # killed before the first step was written: a valid, empty run
    data = steps_path.read_bytes()
    lines = data.split(b"\n")
    # A complete file ends with "\n", leaving an empty last element. Anything else in the
    # last element is a line the writer did not finish, or finished without its newline.
    steps: list[dict] = []
    warnings: list[str] = []
    last = len(lines) - 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if number - 1 == last:
                message = (
                    f"{steps_path}: skipped the last line ({number}), which is incomplete "
                    f"({len(raw)} bytes, cut off when the run was interrupted); "
                    f"the {len(steps)} complete steps before it are kept"
                )
                log.warning("%s", message)
                warnings.append(message)
                continue
            raise FormatError(f"{steps_path}, line {number}: not valid JSON: {exc}") from exc
        if not isinstance(record, dict) or "index" not in record:
            raise FormatError(f"{steps_path}, line {number}: not a step record")
        steps.append(record)
    return steps, warnings


def load_run(path: str | os.PathLike) -> Run:
    """Load a run folder; see the module docstring for what is tolerated."""
    path = Path(path)
    meta = _read_meta(path)
    steps, warnings = _read_steps(path)
    run = Run(path=path, meta=meta, steps=steps, warnings=warnings)
    if run.interrupted:
        message = (
            f"{path}: the run did not finish (meta.json still says 'running'): "
            f"it was interrupted after {len(steps)} recorded steps"
        )
        log.info("%s", message)
        run.warnings.append(message)
    return run


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))
    except FileNotFoundError:
        return 0


def summarize(path: Path) -> RunSummary:
    try:
        meta = _read_meta(path)
    except (FormatError, OSError) as exc:
        return RunSummary(path, "", None, None, "unreadable", 0, "", "", error=str(exc))
    return RunSummary(
        path=path,
        task=meta.get("task", ""),
        started_at=meta.get("started_at"),
        ended_at=meta.get("ended_at"),
        outcome=meta.get("outcome") or RUNNING,
        steps=_count_lines(path / schema.STEPS_FILE),
        dialect=meta.get("dialect", ""),
        model=meta.get("model", ""),
    )


def is_run_dir(path: Path) -> bool:
    return (path / schema.META_FILE).is_file()


def list_runs(runs_dir: str | os.PathLike) -> list[RunSummary]:
    """Every run folder directly inside `runs_dir`, newest first; unreadable ones included
    with `error` set so a listing shows them instead of hiding them."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    summaries = [summarize(p) for p in runs_dir.iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(summaries, key=lambda s: (s.started_at or 0.0, s.path.name), reverse=True)


def last_run(runs_dir: str | os.PathLike | None) -> Path:
    """The newest run: in `runs_dir`, or the last one recorded anywhere else (`deskpilot
    run --record DIR` remembers its folder), whichever started later."""
    from agent.settings import remembered_last_run

    candidates = list_runs(runs_dir)[:1] if runs_dir is not None else []
    remembered = remembered_last_run()
    if remembered is not None and is_run_dir(remembered):
        candidates.append(summarize(remembered))
    if not candidates:
        where = f"in {runs_dir}" if runs_dir is not None else "yet"
        raise FileNotFoundError(f"no recorded runs {where}")
    return max(candidates, key=lambda s: (s.started_at or 0.0, s.path.name)).path


def resolve_run_path(arg: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """A run given on the command line: a path, a folder name inside `runs_dir`, or
    "last" for the newest run (see last_run)."""
    path = Path(arg).expanduser()
    if arg == "last" and not path.exists():
        return last_run(runs_dir)
    if path.exists() or runs_dir is None:
        return path
    runs_dir = Path(runs_dir)
    candidate = runs_dir / arg
    if candidate.exists():
        return candidate
    raise FileNotFoundError(f"no such run: {arg} (not a path, nor a run in {runs_dir})")


def expand_run_paths(args: list[str], runs_dir: str | os.PathLike | None = None) -> list[Path]:
    """Command-line run arguments to run folders: a folder of runs expands to its runs."""
    out: list[Path] = []
    for arg in args:
        path = resolve_run_path(arg, runs_dir)
        if path.is_dir() and not is_run_dir(path):
            inner = [s.path for s in reversed(list_runs(path))]  # oldest first
            if not inner:
                raise FormatError(f"{path} is neither a run folder nor a folder of runs")
            out.extend(inner)
        else:
            out.append(path)
    return out
