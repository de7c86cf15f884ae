"""Preference pairs for DPO: one prompt, a chosen and a rejected reply.

Three sources, one `Pair` type:

- **A pairs JSONL** (one JSON object a line):

      {"messages": [{"role": "system", "content": "..."},
                    {"role": "user", "content": [{"type": "text", "text": "..."},
                                                 {"type": "image", "image": "shots/a.png"}]}],
       "chosen": "Thought: ...\\nAction: click(...)",
       "rejected": "Thought: ...\\nAction: click(...)"}

  `messages` is the prompt in the chat format the processor takes (a content is a string or
  a list of text/image parts); image paths are relative to the JSONL file. `chosen` and
  `rejected` are the two assistant replies (a string, or an assistant message
  {"role": "assistant", "content": "..."}).
- **Corrected runs**: an agent run that stopped (the model asked for help with call_user,
  or the person stopped it to take over) followed by a `record-demo` of the same task. The
  model's last proposed reply is rejected; the person's first demonstrated action, written
  in the base's dialect with its point moved from the demonstration's frame to the agent
  step's (agent.frames), is chosen. A demonstration is paired with the latest agent run of
  the same task that started before it.
- **Sampled and scored replies** (`pair_from_scores`): the embedded-model work samples
  several replies for a prompt, scores them (e.g. with the task checker) and passes them
  here; the best becomes chosen and the worst rejected.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.trajectory.loader import FormatError, Run, expand_run_paths, load_run
from train.data import (
    BaseSpeaks,
    DataError,
    ImageCache,
    Sample,
    _text_of,
    needs_rebuild,
    rebuilt_messages,
    step_messages,
    tokenize,
)

log = logging.getLogger(__name__)

CORRECTABLE = ("call_user", "stopped", "refused", "stuck", "max_steps", "error")


@dataclass
class Pair:
    source: str  # where it came from, for messages
    messages: list[dict]  # the prompt (no assistant reply at the end)
    chosen: str
    rejected: str


def make_pair(messages: Sequence[dict], chosen: str, rejected: str,
              source: str = "generated pair") -> Pair:
    """A checked Pair: a non-empty prompt ending in a user turn, two different replies."""
    messages = list(messages)
    if not messages or messages[-1].get("role") != "user":
        raise DataError(f"{source}: the prompt must end with a user message")
    for name, reply in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(reply, str) or not reply.strip():
            raise DataError(f"{source}: the {name} reply is empty or not a string")
    if chosen.strip() == rejected.strip():
        raise DataError(f"{source}: chosen and rejected are the same reply")
    return Pair(source, messages, chosen, rejected)


def pair_from_scores(messages: Sequence[dict], replies: Sequence[str],
                     scores: Sequence[float], source: str = "sampled") -> Pair | None:
    """Best-scored reply chosen, worst rejected; None when every score ties (no preference
    to learn) or fewer than two distinct replies were sampled."""
    if len(replies) != len(scores):
        raise ValueError(f"{len(replies)} replies but {len(scores)} scores")
    if len(replies) < 2:
        return None
    best = max(range(len(replies)), key=lambda i: (scores[i], -i))
    worst = min(range(len(replies)), key=lambda i: (scores[i], i))
    if scores[best] == scores[worst] or replies[best].strip() == replies[worst].strip():
        return None
    return make_pair(messages, replies[best], replies[worst], source)


# --- pairs JSONL -----------------------------------------------------------------------------


def _reply_text(value, source: str, name: str) -> str:
    if isinstance(value, dict):
        if value.get("role", "assistant") != "assistant":
            raise DataError(f"{source}: {name} must be an assistant reply")
        value = value.get("content")
    if not isinstance(value, str):
        raise DataError(f"{source}: {name} must be a string (or an assistant message)")
    return value


def read_pairs_jsonl(path: Path) -> list[Pair]:
    """A pairs JSONL (schema in the module docstring) -> pairs, images resolved to paths."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not readable: {exc}") from exc
    pairs = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        source = f"{path} line {n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: not JSON ({exc})") from exc
        if not isinstance(rec, dict) or not isinstance(rec.get("messages"), list):
            raise DataError(f"{source}: needs 'messages' (a list), 'chosen' and 'rejected'")
        for key in ("chosen", "rejected"):
            if key not in rec:
                raise DataError(f"{source}: no {key!r} reply")
        messages = []
        for m in rec["messages"]:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
                raise DataError(f"{source}: a message needs role system|user|assistant, got "
                                f"{m!r:.120}")
            content = m.get("content")
            if isinstance(content, list):
                parts = []
                for p in content:
                    if isinstance(p, dict) and p.get("type") == "image":
                        image = path.parent / str(p.get("image", ""))
                        if not image.is_file():
                            raise DataError(f"{source}: image {image} does not exist")
                        p = {**p, "image": str(image)}
                    parts.append(p)
                content = parts
            elif not isinstance(content, str):
                raise DataError(f"{source}: a message's content must be a string or a list")
            messages.append({"role": m["role"], "content": content})
        pairs.append(make_pair(messages, _reply_text(rec["chosen"], source, "chosen"),
                               _reply_text(rec["rejected"], source, "rejected"), source))
    if not pairs:
        raise DataError(f"{path}: no pairs")
    return pairs


# --- corrected runs --------------------------------------------------------------------------


def is_demonstration(run: Run) -> bool:
    return bool(run.meta.get("demonstration")) or run.meta.get("backend") == "demonstration"


def correction_pair(agent: Run, demo: Run, speaks: BaseSpeaks, images: ImageCache) -> Pair:
    """The agent's last proposed reply (rejected) vs the person's first demonstrated action
    (chosen), both in the base's dialect, the action's point in the agent step's frame."""
    from agent.trajectory.export import convert_action
    from agent.trajectory.schema import action_from_dict

    dialect = speaks.dialect
    proposed = [i for i, s in enumerate(agent.steps) if s.get("actions") and
                not s.get("parse_error") and (s.get("reply") or "").strip()]
    if not proposed:
        raise DataError(f"{agent.path}: no step with a parsed reply to reject")
    i = proposed[-1]
    step = agent.steps[i]
    frame = agent.frame(step)
    if needs_rebuild(agent, dialect):
        rebuilt = rebuilt_messages(agent, dialect, images)
        if i not in rebuilt:
            raise DataError(f"{agent.path} step {step.get('index', i)}: its reply cannot be "
                            f"re-expressed in {dialect.name}")
        messages = rebuilt[i]
        frame = frame.with_model(tuple(dialect.model_size(*frame.image_size)), dialect.space)
    else:
        messages = step_messages(agent, step, images)
    shown = [s for s in demo.steps if s.get("actions")]
    if not shown:
        raise DataError(f"{demo.path}: the demonstration holds no action")
    first = shown[0]
    try:
        actions = [convert_action(action_from_dict(a), demo.frame(first), frame)
                   for a in first["actions"]]
        chosen = dialect.format_reply("", actions)
    except ValueError as exc:
        raise DataError(f"{demo.path}: cannot write its first action in {dialect.name}: "
                        f"{exc}") from exc
    *prompt, reply = messages
    source = f"{agent.path} step {step.get('index', i)} corrected by {demo.path}"
    return make_pair(prompt, chosen, _text_of(reply), source)


def correction_pairs(runs: list[Run], speaks: BaseSpeaks, images: ImageCache) -> list[Pair]:
    """Every demonstration paired with the latest earlier agent run of the same task."""
    agents = sorted((r for r in runs if not is_demonstration(r)),
                    key=lambda r: r.meta.get("started_at") or 0)
    pairs = []
    for demo in (r for r in runs if is_demonstration(r)):
        started = demo.meta.get("started_at") or 0
        before = [a for a in agents if a.task == demo.task and
                  (a.meta.get("started_at") or 0) <= started]
        if not before:
            raise DataError(f"{demo.path}: no agent run of the task {demo.task!r} before this "
                            "demonstration; give the run it corrects too")
        agent = before[-1]
        if agent.outcome not in CORRECTABLE:
            log.warning("%s: outcome %r; pairing it with %s anyway", agent.path, agent.outcome,
                        demo.path)
        pairs.append(correction_pair(agent, demo, speaks, images))
    if runs and not pairs:
        raise DataError(f"{runs[0].path}: no demonstration among the runs given; a corrected "
                        "run is an agent run plus the `record-demo` of the same task after it")
    return pairs


# --- everything the command line names -------------------------------------------------------


def load_pairs(inputs: Iterable[str], speaks: BaseSpeaks, runs_dir=None,
               images: ImageCache | None = None) -> list[Pair]:
    """Pairs JSONL files and run folders (agent runs + the demonstrations correcting them)."""
    images = images or ImageCache()
    pairs: list[Pair] = []
    runs: list[Run] = []
    for arg in inputs:
        path = Path(arg).expanduser()
        if path.is_file() and path.suffix == ".jsonl":
            pairs += read_pairs_jsonl(path)
            continue
        try:
            for run_path in expand_run_paths([arg], runs_dir):
                runs.append(load_run(run_path))
        except (FileNotFoundError, FormatError) as exc:
            raise DataError(f"{arg}: {exc}") from exc
    if runs:
        pairs += correction_pairs(runs, speaks, images)
    if not pairs:
        raise DataError("no preference pairs in the inputs")
    return pairs


def tokenize_pair(pair: Pair, processor, images: ImageCache) -> tuple[Sample, Sample]:
    """(chosen, rejected) samples: the same prompt tokens, each reply as the target."""
    chosen = tokenize([*pair.messages, {"role": "assistant", "content": pair.chosen}],
                      processor, images, pair.source + " (chosen)")
    rejected = tokenize([*pair.messages, {"role": "assistant", "content": pair.rejected}],
                        processor, images, pair.source + " (rejected)")
    return chosen, rejected
