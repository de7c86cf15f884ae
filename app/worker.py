"""The agent loop and model loading, on worker threads that talk to the UI only by signals.

The UI thread never waits on the model, the screen or the disk: `RunWorker.run` drives
`agent.loop.Agent.run(task)` on a QThread and emits a signal for everything a view
shows. When the agent needs a person (a risky action to confirm, a `call_user`
question), the worker emits a signal and blocks *its own* thread until the controller
answers through a thread-safe method; stopping the run releases any such wait.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from agent.settings import DEFAULT_MAX_NEW_TOKENS

log = logging.getLogger(__name__)


@dataclass
class RunRequest:
    """Everything one run needs, prepared on the UI thread (no I/O happens here)."""

    task: str
    policy: Any  # agent.protocols.Policy
    env: Any  # agent.protocols.Env
    dialect: Any  # agent.protocols.Dialect
    max_steps: int = 50
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS  # settings.max_new_tokens
    safety: str = "normal"
    command_patterns: list[str] | None = None  # None: the safety module's defaults
    runs_dir: Path | None = None  # None: do not record
    model: str = ""
    backend: str = ""
    monitors: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def latest_image(messages: list[dict]):
    """The last image in chat messages (the screenshot the model is about to see)."""
    for message in reversed(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in reversed(content):
            if isinstance(part, dict) and part.get("type") == "image":
                image = part.get("image")
                if image is not None and hasattr(image, "size"):
                    return image
    return None


class StreamingPolicy:
    """Wraps a policy so every reply fragment and every request also reaches the UI."""

    def __init__(self, inner: Any, on_text: Callable[[str], None], on_request: Callable):
        self._inner = inner
        self._on_text = on_text
        self._on_request = on_request

    def chat(self, messages: list[dict], *, on_text=None, **options: Any):
        self._on_request(messages)

        def both(text: str) -> None:
            if on_text is not None:
                on_text(text)
            self._on_text(text)

        return self._inner.chat(messages, on_text=both, **options)

    def __getattr__(self, name: str) -> Any:  # name, timings, close... of the real policy
        return getattr(self._inner, name)


class _Answer:
    """A one-shot answer handed from the UI thread to the waiting worker thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.value: Any = None

    def set(self, value: Any) -> None:
        self.value = value
        self._event.set()

    def wait(self, cancelled: Callable[[], bool]) -> Any:
        while not self._event.wait(0.05):
            if cancelled():
                return None
        return self.value


class RunWorker(QObject):
    """Runs one task. Create, move to a QThread, connect `thread.started` to `run`."""

    step_started = Signal(int)  # index of the step being computed
    observed = Signal(object)  # PIL image the model is being shown
    text_streamed = Signal(str)  # new reply text
    step_done = Signal(object)  # agent.loop.Step
    run_ended = Signal(str, str, str)  # outcome, final message, run folder ("" if none)
    confirmation_needed = Signal(object, str)  # Action, reason
    user_reply_needed = Signal(str)  # the model's question
    error = Signal(str)

    def __init__(self, request: RunRequest) -> None:
        super().__init__()
        self.request = request
        self.agent = None
        self.run_dir: Path | None = None
        self._stopped = threading.Event()
        self._pending: _Answer | None = None
        self._lock = threading.Lock()

    # --- thread-safe controls (called from the UI thread) ---------------------------------

    def stop(self) -> None:
        self._stopped.set()
        agent = self.agent
        if agent is not None:
            agent.stop()

    def pause(self) -> None:
        if self.agent is not None:
            self.agent.pause()

    def resume(self) -> None:
        if self.agent is not None:
            self.agent.resume()

    def answer_confirmation(self, allowed: bool) -> None:
        self._answer(bool(allowed))

    def answer_user(self, text: str | None) -> None:
        self._answer(text if text else None)

    def _answer(self, value: Any) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.set(value)

    # --- callbacks the agent calls on this worker's thread --------------------------------

    def _ask(self, emit: Callable[[], None]) -> Any:
        answer = _Answer()
        with self._lock:
            self._pending = answer
        emit()
        return answer.wait(self._stopped.is_set)

    def _confirm(self, action: Any, reason: str) -> bool:
        return bool(self._ask(lambda: self.confirmation_needed.emit(action, reason)))

    def _ask_user(self, question: str) -> str | None:
        return self._ask(lambda: self.user_reply_needed.emit(question))

    def _on_request(self, messages: list[dict]) -> None:
        image = latest_image(messages)
        if image is not None:
            self.observed.emit(image)

    # --- the run --------------------------------------------------------------------------

    def _make_agent(self):
        from agent.loop import Agent
        from agent.safety import SafetyPolicy

        req = self.request
        policy = StreamingPolicy(req.policy, self.text_streamed.emit, self._on_request)
        safety = SafetyPolicy(
            req.safety, confirm=self._confirm, command_patterns=req.command_patterns
        )
        return Agent(
            policy, req.env, req.dialect, max_steps=req.max_steps, safety=safety,
            ask_user=self._ask_user, chat_options={"max_new_tokens": req.max_new_tokens},
        )

    def _make_recorder(self):
        req = self.request
        if req.runs_dir is None:
            return None
        from agent.trajectory import Recorder

        recorder = Recorder(
            req.runs_dir, task=req.task, dialect=getattr(req.dialect, "name", ""),
            model=req.model, backend=req.backend, monitors=req.monitors, extra=req.extra or None,
        )
        self.run_dir = recorder.run_dir
        return recorder

    @Slot()
    def run(self) -> None:
        outcome, message = "error", ""
        recorder = None
        steps = None
        try:
            recorder = self._make_recorder()
            self.agent = self._make_agent()
            if self._stopped.is_set():  # stopped before the agent existed
                self.agent.stop()
            steps = self.agent.run(self.request.task)
            index = 0
            while True:
                self.step_started.emit(index)
                step = next(steps, None)
                if step is None:
                    break
                if recorder is not None:
                    recorder.write_step(step)
                self.step_done.emit(step)
                index += 1
                if step.outcome is not None:  # the run's last step: let the generator end
                    for _ in steps:
                        pass
                    break
            outcome = self.agent.outcome or "finished"
            message = self.agent.final_message or ""
        except Exception as exc:  # anything at all must reach the window, not just stderr
            log.error("run failed:\n%s", traceback.format_exc())
            message = friendly_error(exc)
            outcome = "stopped" if self._stopped.is_set() and recorder is not None else "error"
            self.error.emit(message)
        finally:
            if steps is not None:
                # Ends the run now even when recording a step failed: the loop's own
                # cleanup (releasing held keys) runs before the run is reported over.
                steps.close()
            if recorder is not None:
                try:
                    recorder.finish(outcome, message)
                except Exception as exc:  # a full disk must not hide the run's end
                    log.error("could not finish the trajectory: %s", exc)
                    self.error.emit(f"Could not finish the recording: {exc}")
            self.run_ended.emit(outcome, message, str(self.run_dir or ""))


def friendly_error(exc: BaseException) -> str:
    """A sentence a person can act on for the failures people actually hit."""
    name = type(exc).__name__
    text = str(exc) or name
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        return (
            "Out of GPU memory. Try a smaller model or dtype, close other GPU programs, "
            f"or use a remote server. ({text.splitlines()[0]})"
        )
    if name == "DisplayError":
        return f"The screen cannot be captured: {text}"
    if name in ("RemoteError", "ConnectError", "ConnectTimeout"):
        return f"The model server did not answer: {text}"
    if isinstance(exc, FileNotFoundError):
        return f"Not found: {text}"
    return f"{name}: {text}"


# --- model loading ------------------------------------------------------------------------


def process_memory_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


class LoadWorker(QObject):
    """Loads a model (local vlm engine or anything `loader` returns) off the UI thread."""

    model_loading_progress = Signal(object, object)  # done bytes, total bytes (may exceed 2**31)
    loaded = Signal(object, dict)  # the policy, {"seconds", "memory_bytes", "device"}
    error = Signal(str)
    finished = Signal()

    def __init__(self, loader: Callable[[Callable[[int, int], None]], Any]) -> None:
        super().__init__()
        self._loader = loader

    @Slot()
    def run(self) -> None:
        start = time.monotonic()
        cuda_before = _cuda_allocated()
        rss_before = process_memory_bytes()
        try:
            policy = self._loader(lambda done, total: self.model_loading_progress.emit(done, total))
        except Exception as exc:
            log.error("model load failed:\n%s", traceback.format_exc())
            self.error.emit("Could not load the model. " + friendly_error(exc))
        else:
            cuda_after = _cuda_allocated()
            if cuda_after is not None and cuda_before is not None and cuda_after > cuda_before:
                memory, where = cuda_after - cuda_before, "GPU"
            else:
                memory, where = max(0, process_memory_bytes() - rss_before), "RAM"
            info = {"seconds": time.monotonic() - start, "memory_bytes": memory, "where": where}
            self.loaded.emit(policy, info)
        finally:
            self.finished.emit()


def _cuda_allocated() -> int | None:
    import sys

    torch = sys.modules.get("torch")  # only ask when torch is already in use
    if torch is None or not torch.cuda.is_available():
        return None
    return int(torch.cuda.memory_allocated())


# --- short jobs (export, report, connection check, demo recording) -------------------------


class Job(QObject):
    """Calls `fn()` on a worker thread; `done(result)` or `failed(message)`."""

    done = Signal(object)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self._fn = fn

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:
            log.warning("job failed: %s", exc)
            self.failed.emit(friendly_error(exc))
        else:
            self.done.emit(result)
        finally:
            self.finished.emit()


class JobHandle(QObject):
    """The UI-thread end of a Job: calls plain Python callbacks on the UI thread.

    A signal connected to a lambda runs the lambda in the emitting thread, so results
    from a worker thread are received here, by slots of an object living on the UI
    thread (queued connections), and only then handed to the callbacks."""

    def __init__(self, on_done: Callable[[Any], None], on_failed: Callable[[str], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._on_done = on_done
        self._on_failed = on_failed
        self.running = True
        self.failed_with: str | None = None
        self.job: Job | None = None

    @Slot(object)
    def done(self, result: Any) -> None:
        self._on_done(result)

    @Slot(str)
    def failed(self, message: str) -> None:
        self.failed_with = message
        self._on_failed(message)

    @Slot()
    def finished(self) -> None:
        self.running = False

    @Slot()
    def thread_ended(self) -> None:
        """The job's thread has stopped: only now may Python free the job (freeing it while
        the thread still ran, or beside a deleteLater there, crashed the process)."""
        self.job = None
        self.deleteLater()


def start_job(fn: Callable[[], Any], on_done: Callable[[Any], None],
              on_failed: Callable[[str], None], parent: QObject) -> JobHandle:
    """Run `fn()` on a worker thread; `on_done(result)` or `on_failed(message)` on this one."""
    handle = JobHandle(on_done, on_failed, parent)
    job = Job(fn)
    handle.job = job  # Python owns the parentless job: keep it alive while it runs
    job.done.connect(handle.done)
    job.failed.connect(handle.failed)
    job.finished.connect(handle.finished)
    thread = start_in_thread(job, parent, delete_worker=False)
    thread.finished.connect(handle.thread_ended)
    return handle


def start_in_thread(worker: QObject, parent: QObject | None = None,
                    delete_worker: bool = True) -> QThread:
    """Move `worker` to a new QThread, start `worker.run` there, clean up when it finishes.

    The worker must have a `finished` signal or a `run_ended` one; the thread quits on it.
    `delete_worker=False`: the caller's Python reference owns the worker and drops it once
    the thread has finished (Qt must not delete it too).
    """
    thread = QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    end = getattr(worker, "finished", None) or worker.run_ended
    end.connect(thread.quit)
    if delete_worker:
        thread.finished.connect(worker.deleteLater)
    thread.finished.connect(thread.deleteLater)
    thread.start()
    return thread
