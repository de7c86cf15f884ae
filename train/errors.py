"""The error a training run raises when it cannot start or finish (train.sft re-exports it)."""

from __future__ import annotations


class TrainError(RuntimeError):
    """A training run that cannot start or finish: the message says why and what to do."""
