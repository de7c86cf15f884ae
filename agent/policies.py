"""ScriptPolicy: a "model" that plays replies written in advance.

For demos and end-to-end tests (`deskpilot run --policy script:FILE`): each reply still
goes through the real dialect parser, frames, safety policy and executor, so a script
exercises everything but the neural network. A script file holds one reply per step,
separated by a line that is exactly `---`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.protocols import TextCallback

SEPARATOR = "---"
STREAM_CHUNK = 16  # characters per on_text call, so streaming UIs see several updates


class ScriptExhausted(RuntimeError):
    """The run asked for more replies than the script has."""


@dataclass
class ScriptReply:
    text: str
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False  # `cancel` fired while streaming: `text` is the part sent


def cancel_check(cancel: Any) -> Callable[[], bool]:
    """A zero-argument test for a `cancel` hook: a threading.Event, a callable, or None."""
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError(f"cancel must be a threading.Event or a zero-argument callable, "
                    f"got {type(cancel).__name__}")


def split_script(text: str) -> list[str]:
    """Replies separated by `---` lines; blank chunks (e.g. a trailing `---`) dropped."""
    chunks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() == SEPARATOR:
            chunks.append([])
        else:
            chunks[-1].append(line)
    return [reply for lines in chunks if (reply := "\n".join(lines).strip())]


def stream_text(text: str, on_text: TextCallback | None, cancel: Any,
                chunk: int = STREAM_CHUNK) -> tuple[str, bool]:
    """Hand a reply written in advance to `on_text` in `chunk`-character pieces -> (the text
    streamed, cancelled?). A `cancel` that fires while it streams is checked before each
    piece and cuts the reply there; one that had already fired when the reply was asked for
    does not: such a reply has no thinking time to cut short, so it is returned whole and
    the loop stops before acting on it."""
    check = cancel_check(cancel)
    cancelled = (lambda: False) if check() else check
    for i in range(0, len(text), chunk):
        if cancelled():
            return text[:i], True
        if on_text is not None:
            on_text(text[i : i + chunk])
    return text, False


class ScriptPolicy:
    """Returns the next scripted reply on each chat() call; thread-safe."""

    def __init__(self, path_or_replies: str | os.PathLike | Sequence[str]):
        if isinstance(path_or_replies, str | os.PathLike):
            path = Path(path_or_replies)
            if not path.is_file():
                raise FileNotFoundError(f"script file not found: {path}")
            self.source = str(path)
            self.replies = split_script(path.read_text(encoding="utf-8"))
        else:
            self.source = "<list>"
            self.replies = [str(r) for r in path_or_replies]
        if not self.replies:
            raise ValueError(f"script {self.source} has no replies")
        self.calls: list[list[dict]] = []  # the messages of each chat() call
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self.replies) - len(self.calls)

    def chat(
        self, messages: list[dict], *, on_text: TextCallback | None = None, cancel: Any = None,
        **options: Any,
    ) -> ScriptReply:
        """The next reply, streamed in chunks; `cancel` as in `stream_text`."""
        t0 = time.perf_counter()
        with self._lock:
            n = len(self.calls)
            if n >= len(self.replies):
                raise ScriptExhausted(
                    f"script {self.source} has {len(self.replies)} replies; "
                    f"step {n + 1} asked for another"
                )
            self.calls.append(messages)
            text = self.replies[n]
        sent, cancelled = stream_text(text, on_text, cancel)
        return ScriptReply(sent, {"decode": time.perf_counter() - t0}, cancelled)
