"""Write a run to disk as it happens, so that a crash at any instant loses no finished step.

Order of writes for one step (each durable before the next starts):
  1. the screenshot and the model image, each to a temporary name, fsynced, renamed;
  2. one line appended to steps.jsonl, flushed and fsynced.
A line therefore never names an image that is not on disk, and a process killed between
(1) and (2) leaves only orphan images, which the loader ignores. `meta.json` is written
atomically (temp + rename) when the run starts, with outcome "running", and again by
`finish`; a run whose meta still says "running" was interrupted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.trajectory import schema

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

RUNNING = "running"


def _fsync_dir(path: Path) -> None:
    """Make a rename durable. Directories cannot be opened on Windows; skip there."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_png_atomic(image: Image, path: Path) -> None:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_atomic(path, buf.getvalue())


def slugify(task: str, limit: int = 40) -> str:
    """A folder-name-safe slug of the task; keeps non-ASCII letters (tasks may be Chinese)."""
    slug = re.sub(r"[^\w]+", "-", task.lower()).strip("-_")
    return slug[:limit].rstrip("-_") or "run"


def app_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deskpilot")
    except PackageNotFoundError:
        return "unknown"


def _image_digest(image: Image) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class Recorder:
    """Records one run into `runs_dir/<UTC time>-<slug>/` (see agent/trajectory/schema.py).

    `write_step` and `finish` are thread-safe: the app records from its worker thread
    while the UI may ask to finish a stopped run.
    """

    def __init__(
        self,
        runs_dir: str | os.PathLike,
        *,
        task: str,
        dialect: str,
        model: str,
        backend: str,
        monitors: list[dict],
        extra: dict | None = None,
    ) -> None:
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = self._new_run_dir(runs_dir, task)
        self._lock = threading.Lock()
        self._images: dict[str, str] = {}  # image digest -> file name in the run folder
        self._by_id: dict[int, tuple[weakref.ref, str]] = {}  # id(image) -> (ref, file name)
        self._steps = 0
        self._finished = False
        self.meta: dict[str, Any] = {
            "format_version": schema.FORMAT_VERSION,
            "task": task,
            "dialect": dialect,
            "model": model,
            "backend": backend,
            "monitors": schema.jsonable(monitors),
            "app_version": app_version(),
            "started_at": time.time(),
            "ended_at": None,
            "outcome": RUNNING,
            "final_message": "",
            "steps": 0,
            "extra": schema.jsonable(extra or {}),
        }
        self._write_meta()
        # Binary append mode: one write() per line, no newline translation on Windows.
        self._steps_file = open(self.run_dir / schema.STEPS_FILE, "ab")
        log.info("recording run to %s", self.run_dir)

    @staticmethod
    def _new_run_dir(runs_dir: Path, task: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        base = f"{stamp}-{slugify(task)}"
        for n in range(1, 1000):
            path = runs_dir / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
        raise FileExistsError(f"could not create a new run folder named {base}* in {runs_dir}")

    def _write_meta(self) -> None:
        data = json.dumps(self.meta, ensure_ascii=False, indent=2).encode("utf-8")
        write_atomic(self.run_dir / schema.META_FILE, data)

    # --- images ---------------------------------------------------------------------------

    def _store_image(self, image: Image, name: str) -> str:
        """Save `image` as `name` unless identical pixels are already stored; return its name.

        The loop hands the same image objects back in every later prompt's history, so
        they are recognized by identity first (a weak reference guards against a reused
        id) and hashed only when new: hashing a 1932x1092 image costs ~25 ms.
        """
        seen = self._by_id.get(id(image))
        if seen is not None and seen[0]() is image:
            return seen[1]
        digest = _image_digest(image)
        known = self._images.get(digest)
        if known is None:
            save_png_atomic(image, self.run_dir / name)
            self._images[digest] = known = name
        try:
            self._by_id[id(image)] = (weakref.ref(image), known)
        except TypeError:  # an image type without weak references: hashing still works
            pass
        return known

    def _messages_record(self, index: int, messages: list[dict]) -> list[dict]:
        """The messages with every inline image replaced by its file name in this run."""
        extra = 0
        out = []
        for message in messages:
            record = {k: v for k, v in message.items() if k != "content"}
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for part in content:
                    part = dict(part)
                    image = part.get("image")
                    if part.get("type") == "image" and not isinstance(image, str | None):
                        extra += 1
                        part["image"] = self._store_image(
                            image, schema.extra_image_name(index, extra)
                        )
                    parts.append(part)
                content = parts
            record["content"] = content
            out.append(schema.jsonable(record))
        return out

    # --- steps ----------------------------------------------------------------------------

    def step_record(self, step: Any) -> dict:
        """Save the step's images and build its steps.jsonl record (see schema.py)."""
        index = int(step.index)
        observation = step.observation
        screenshot = schema.screenshot_name(index)
        save_png_atomic(observation.image, self.run_dir / screenshot)
        model_image = None
        if getattr(step, "model_image", None) is not None:
            # Registered first, so the messages' copy of this image resolves to this name.
            model_image = self._store_image(step.model_image, schema.model_image_name(index))
        response = step.response
        return {
            "index": index,
            "started_at": step.started_at,
            "ended_at": step.ended_at,
            "captured_at": getattr(observation, "captured_at", None),
            "screenshot": screenshot,
            "model_image": model_image,
            "frame": observation.frame.to_dict(),
            "messages": self._messages_record(index, step.messages or []),
            "reply": step.reply,
            "thought": response.thought if response is not None else None,
            # kept apart from the thought since the parser no longer merges them
            "thinking": getattr(response, "thinking", "") if response is not None else None,
            "reflection": getattr(response, "reflection", "") if response is not None else None,
            "actions": [a.to_dict() for a in step.actions],
            "decisions": schema.jsonable(list(step.decisions)),
            "results": schema.jsonable(list(step.results)),
            "timings": schema.jsonable(dict(step.timings or {})),
            "parse_error": step.parse_error,
            "error": step.error,
            "outcome": step.outcome,
        }

    def write_step(self, step: Any) -> None:
        """Persist one agent.loop.Step durably before returning (images, then the line)."""
        with self._lock:
            if self._finished:
                raise RuntimeError(f"run {self.run_dir} is finished; cannot add step {step.index}")
            line = schema.dumps_line(schema.jsonable(self.step_record(step)))
            self._steps_file.write(line.encode("utf-8"))
            self._steps_file.flush()
            os.fsync(self._steps_file.fileno())
            self._steps += 1

    def finish(self, outcome: str, final_message: str = "") -> None:
        """Close the run: record its outcome and end time in meta.json (atomically)."""
        with self._lock:
            if self._finished:
                log.warning("run %s finished twice; keeping outcome %r", self.run_dir, outcome)
            self._finished = True
            self._steps_file.close()
            self.meta.update(
                ended_at=time.time(),
                outcome=outcome,
                final_message=final_message,
                steps=self._steps,
            )
            self._write_meta()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """A run left without `finish` ends as "error" (an exception) or "stopped"."""
        if not self._finished:
            self.finish("error" if exc_type is not None else "stopped", str(exc or ""))
