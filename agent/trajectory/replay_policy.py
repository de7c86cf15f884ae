"""A Policy that answers with a recorded run's replies, in order.

`deskpilot run --policy replay:RUN` re-runs a task through the whole live pipeline
(parser, frames, safety, executor) with the model's old answers, which reproduces a run
without a GPU and lets a parser or executor change be checked against real replies.
Every recorded step's raw reply is played, including ones that failed to parse, so the
loop sees the same sequence (and retries) as the original run.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

from agent.policies import stream_text
from agent.trajectory.loader import load_run

log = logging.getLogger(__name__)


class ReplayExhausted(RuntimeError):
    """The loop asked for more replies than the recorded run has."""


@dataclass
class ReplayReply:
    text: str
    timings: dict = field(default_factory=dict)
    cancelled: bool = False  # `cancel` fired while it streamed: `text` is the part sent


class ReplayPolicy:
    """Satisfies agent.protocols.Policy; `chat` ignores the messages' content.

    The replies of steps [start, end) are played; `remaining` says how many are left.
    """

    def __init__(self, run_path: str | os.PathLike, *, start: int = 0) -> None:
        run = load_run(run_path)
        self.run = run
        self.replies = [s.get("reply") or "" for s in run.steps if s.get("reply") is not None]
        if not self.replies:
            raise ValueError(f"run {run.path} has no recorded replies to replay")
        if not 0 <= start < len(self.replies):
            raise ValueError(f"start {start} is outside the run's {len(self.replies)} replies")
        self._next = start
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        return len(self.replies) - self._next

    def chat(self, messages: list[dict], *, on_text=None, cancel=None, **options) -> ReplayReply:
        """The next recorded reply, streamed in one piece (as before: a replayed run shows
        each reply at once), so only a `cancel` that fires inside `on_text` has anything
        to cut; see agent.policies.stream_text."""
        with self._lock:
            if self._next >= len(self.replies):
                raise ReplayExhausted(
                    f"the recorded run {self.run.path.name} has only {len(self.replies)} "
                    f"replies; the replayed run asked for more (its screen differs?)"
                )
            text = self.replies[self._next]
            self._next += 1
        sent, cancelled = stream_text(text, on_text, cancel, chunk=max(len(text), 1))
        return ReplayReply(text=sent, timings={}, cancelled=cancelled)
