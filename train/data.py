"""Training samples: recorded steps (or a LLaMA-Factory sharegpt JSON) -> token ids + labels.

One step is one sample: the exact messages the model saw at that step and the reply it gave
(or the person demonstrated) as the target. The prompt goes through the base checkpoint's
own processor (vlm.processor: the same chat template, tokenizer and image resize as
inference), so the trained model sees at run time exactly what it was trained on. Labels are
-100 everywhere except the target reply's tokens and the end token after it: earlier replies
in the prompt are context, not targets.

Skipped by default: steps whose reply failed to parse, steps with an action the safety policy
refused, steps that ended in an error. `only_success` keeps only runs whose outcome is
"finished".

Coordinates: a run recorded in another dialect, or at another model image size, than the
base checkpoint speaks at inference is rebuilt in the base's dialect — the screenshots
resized as the base's dialect resizes them, every earlier reply and the target rewritten
with their points moved through the step's Frame (agent.frames) — so a point always means
the same place on the screen. A run that cannot be rebuilt (a history reply that never
parsed) is refused with a message saying how to convert it.

Shapes: L tokens of a sample.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.protocols import HistoryTurn
from agent.trajectory import schema
from agent.trajectory.loader import FormatError, Run, expand_run_paths, load_run

log = logging.getLogger(__name__)

IGNORE = -100  # label of a token that is not trained (the convention of torch's cross_entropy)
SUCCESS = "finished"
LLAMAFACTORY_IMAGE = "<image>"


class DataError(ValueError):
    """Training input that cannot be used: the message names the file and what is wrong."""


@dataclass
class Sample:
    source: str  # "RUN_DIR step 3" or "FILE record 7": where it came from, for messages
    input_ids: list[int]  # (L,) the prompt followed by the target reply and its end token
    labels: list[int]  # (L,) IGNORE except on the target reply and end token
    images: list = field(default_factory=list)  # vlm.processor.ImageInput, in prompt order

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def target_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class BaseSpeaks:
    """How the base checkpoint is prompted at inference: its dialect (as `deskpilot run`
    builds it from the settings) and its processor."""

    dialect: object  # agent.protocols.Dialect
    processor: object  # vlm.processor.Processor


# --- the messages of one recorded step ------------------------------------------------------


def step_messages(run: Run, step: dict, images: ImageCache) -> list[dict]:
    """The messages the model saw at `step`, then the step's reply as the final assistant
    message: agent.trajectory.turns.step_messages (shared with the exports, so a model
    trained here or through an export saw the same prompt), with each image's size pinned
    as the dialect pinned it at run time (`resized_width`/`resized_height`: the recorded
    model images are already the size the model saw; without the pin the processor would
    re-apply the checkpoint's own pixel bounds)."""
    from agent.trajectory import turns

    try:
        messages = turns.step_messages(run, step)
    except (ValueError, FileNotFoundError) as exc:
        raise DataError(str(exc)) from exc
    for msg in messages:
        for part in msg["content"]:
            if part.get("type") == "image":
                width, height = images.open(part["image"]).size
                part["resized_width"], part["resized_height"] = width, height
    return messages


# --- which steps are usable ------------------------------------------------------------------


def skip_reason(step: dict) -> str | None:
    """Why a recorded step is not a training target, or None when it is one."""
    if not (step.get("reply") or "").strip():
        return "no reply"
    if step.get("parse_error"):
        return "reply did not parse"
    if not step.get("actions"):
        return "no actions"
    if any(d.get("verdict") == "refused" for d in step.get("decisions") or []):
        return "an action was refused"
    if step.get("error"):
        return "the step ended in an error"
    return None


# --- samples from runs -----------------------------------------------------------------------


def run_samples(run: Run, speaks: BaseSpeaks, images: ImageCache) -> list[Sample]:
    """Every usable step of `run` as a sample in the base's dialect."""
    if needs_rebuild(run, speaks.dialect):
        message_lists = rebuilt_messages(run, speaks.dialect, images)
    else:
        message_lists = {i: step_messages(run, s, images) for i, s in enumerate(run.steps)
                         if skip_reason(s) is None}
    out = []
    for i, step in enumerate(run.steps):
        reason = skip_reason(step)
        if reason is not None:
            log.info("%s step %s skipped: %s", run.path, step.get("index"), reason)
            continue
        source = f"{run.path} step {step.get('index', i)}"
        out.append(tokenize(message_lists[i], speaks.processor, images, source))
    return out


def needs_rebuild(run: Run, dialect) -> bool:
    """True when the run's dialect or any step's model image size differs from what the
    base's dialect would produce for the same screenshot."""
    if run.meta.get("dialect") != dialect.name:
        return True
    for step in run.steps:
        frame = run.frame(step)
        want = tuple(dialect.model_size(*frame.image_size))
        if frame.model_size is None or tuple(frame.model_size) != want or frame.space != \
                dialect.space:
            return True
    return False


def rebuilt_messages(run: Run, dialect, images: ImageCache) -> dict[int, list[dict]]:
    """step position -> the messages the base's dialect would have sent at that step, with
    the step's reply rewritten in that dialect as the final assistant message."""
    from agent.trajectory.export import convert_action  # points moved through agent.frames
    from agent.trajectory.schema import action_from_dict

    recorded_name = run.meta.get("dialect") or ""
    history: list[HistoryTurn] = []
    out: dict[int, list[dict]] = {}
    broken: DataError | None = None  # set at the first reply that cannot be re-expressed
    for i, step in enumerate(run.steps):
        frame = run.frame(step)
        size = tuple(dialect.model_size(*frame.image_size))
        target = frame.with_model(size, dialect.space)
        shot = images.resized(run.file(step["screenshot"]), size)
        reason = skip_reason(step)
        if broken is not None:
            if reason is None:  # this step's prompt would hold the reply that never parsed
                raise broken
            continue
        if step.get("parse_error") or not step.get("actions"):
            broken = DataError(
                f"{run.path} step {step.get('index', i)}: the run was recorded in "
                f"{recorded_name or 'an unknown dialect'} at {frame.model_size}, the base speaks "
                f"{dialect.name} at {size}, and this step's reply has no parsed actions to "
                "re-express (it stays in every later step's history). Convert the run first: "
                "`deskpilot export RUN --format llamafactory --coords "
                f"{dialect.space}` and train on the JSON, or record the task again with "
                f"`--dialect {dialect.name}`.")
            continue
        if frame.space == "absolute" and frame.model_size is None:
            raise DataError(f"{run.path} step {step.get('index', i)}: absolute coordinates "
                            "but no model image size in the frame; cannot re-express them")
        try:
            actions = [convert_action(action_from_dict(a), frame, target)
                       for a in step["actions"]]
            reply = dialect.format_reply(step.get("thought") or "", actions)
        except ValueError as exc:
            raise DataError(f"{run.path} step {step.get('index', i)}: cannot rewrite the reply "
                            f"in {dialect.name}: {exc}") from exc
        if reason is None:
            messages = dialect.build_messages(run.task, history, shot)
            out[i] = [*messages, {"role": "assistant", "content": reply}]
        history.append(HistoryTurn(shot, reply, feedback_after(run, i)))
    return out


def feedback_after(run: Run, position: int) -> str | None:
    """The text the model was shown after step `position`'s reply (a parse error, the
    person's answer), read from the next step's recorded messages; None when none. Replies
    are matched to their steps by position (turns.reply_steps), not by text: the dialect
    may have normalised the text it showed back."""
    from agent.trajectory import turns

    if position + 1 >= len(run.steps):
        return None
    nxt_step = run.steps[position + 1]
    messages = nxt_step.get("messages") or []
    owners = iter(turns.reply_steps(run, nxt_step))
    for j, msg in enumerate(messages):
        if msg.get("role") != "assistant" or next(owners, None) is not run.steps[position]:
            continue
        nxt = messages[j + 1] if j + 1 < len(messages) else None
        if nxt and nxt.get("role") == "user" and not _has_image(nxt):
            return _text_of(nxt) or None
        return None
    return None


def _text_of(msg: dict) -> str:
    content = msg.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def _has_image(msg: dict) -> bool:
    content = msg.get("content")
    return isinstance(content, list) and any(
        isinstance(p, dict) and (p.get("type") == "image" or "image" in p) for p in content)


# --- LLaMA-Factory sharegpt JSON -------------------------------------------------------------


def sharegpt_messages(path: Path) -> list[tuple[str, list[dict]]]:
    """A LLaMA-Factory sharegpt JSON (`messages` + `images`, images relative to the file)
    -> (source, messages) per record; the last message must be the assistant's target."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records (LLaMA-Factory sharegpt)")
    out = []
    for n, rec in enumerate(records):
        source = f"{path} record {n}"
        if not isinstance(rec, dict) or not isinstance(rec.get("messages"), list):
            raise DataError(f"{source}: no 'messages' list (sharegpt: messages + images)")
        pictures = [str((path.parent / p).resolve()) for p in rec.get("images") or []]
        placeholders = sum(str(m.get("content", "")).count(LLAMAFACTORY_IMAGE)
                           for m in rec["messages"])
        if placeholders != len(pictures):
            raise DataError(f"{source}: {placeholders} {LLAMAFACTORY_IMAGE} placeholders but "
                            f"{len(pictures)} images")
        it = iter(pictures)
        messages = []
        for m in rec["messages"]:
            role, content = m.get("role"), m.get("content")
            if role not in ("system", "user", "assistant") or not isinstance(content, str):
                raise DataError(f"{source}: a message needs role system|user|assistant and "
                                f"string content, got {m!r:.120}")
            pieces = content.split(LLAMAFACTORY_IMAGE)
            parts: list[dict] = []
            for k, piece in enumerate(pieces):
                if k:
                    parts.append({"type": "image", "image": next(it)})
                if piece:
                    parts.append({"type": "text", "text": piece})
            messages.append({"role": role, "content": content if role == "assistant"
                             else parts})
        if not messages or messages[-1]["role"] != "assistant":
            raise DataError(f"{source}: the last message must be the assistant's reply")
        out.append((source, messages))
    return out


# --- tokenisation ----------------------------------------------------------------------------


class ImageCache:
    """Images opened once per file (history screenshots repeat across steps), with a clear
    error naming a file that cannot be read."""

    def __init__(self):
        self._open: dict[str, object] = {}
        self._resized: dict[tuple[str, tuple[int, int]], object] = {}

    def open(self, path: str | Path):
        from PIL import Image, UnidentifiedImageError

        key = str(path)
        if key not in self._open:
            try:
                with Image.open(key) as im:
                    im.load()
                    self._open[key] = im.convert("RGB")
            except (OSError, UnidentifiedImageError, SyntaxError) as exc:
                raise DataError(f"{key}: cannot read the image ({exc})") from exc
        return self._open[key]

    def resized(self, path: str | Path, size: tuple[int, int]):
        """The image resized to `size` the way the agent loop resizes screenshots."""
        from PIL import Image

        key = (str(path), tuple(size))
        if key not in self._resized:
            im = self.open(path)
            self._resized[key] = im if im.size == tuple(size) else im.resize(
                tuple(size), Image.Resampling.BICUBIC)
        return self._resized[key]


def tokenize(messages: list[dict], processor, images: ImageCache, source: str) -> Sample:
    """Messages ending in the assistant's target -> Sample, with the processor's chat
    template for the prompt (as inference renders it) and the reply + end token as labels."""
    *prompt_messages, target = messages
    if target.get("role") != "assistant":
        raise DataError(f"{source}: the last message is not the assistant's reply")
    reply = _text_of(target)
    if not reply.strip():
        raise DataError(f"{source}: the assistant's reply is empty")
    loaded = []
    for msg in prompt_messages:
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for p in content:
                if isinstance(p, dict) and isinstance(p.get("image"), str | Path):
                    p = {**p, "image": images.open(p["image"])}
                parts.append(p)
            msg = {**msg, "content": parts}
        loaded.append(msg)
    try:
        prompt = processor(loaded)
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from exc
    end = processor.end_token_ids[:1]
    reply_ids = processor.tokenizer(reply, add_special_tokens=False)["input_ids"] + end
    ids = prompt.input_ids + reply_ids
    labels = [IGNORE] * len(prompt.input_ids) + reply_ids
    return Sample(source, ids, labels, prompt.images)


# --- everything the command line names -------------------------------------------------------


def load_samples(inputs: Iterable[str], speaks: BaseSpeaks, *, only_success: bool = False,
                 runs_dir=None) -> list[Sample]:
    """Run folders (a folder of runs expands to its runs) and sharegpt JSON files ->
    samples. Raises DataError naming the input when one yields nothing usable."""
    images = ImageCache()
    samples: list[Sample] = []
    for arg in inputs:
        path = Path(arg).expanduser()
        if path.is_file() and path.suffix == ".json":
            found = [tokenize(m, speaks.processor, images, src)
                     for src, m in sharegpt_messages(path)]
            if not found:
                raise DataError(f"{path}: no records")
            samples += found
            continue
        try:
            run_paths = expand_run_paths([arg], runs_dir)
        except (FileNotFoundError, FormatError) as exc:
            raise DataError(f"{arg}: {exc}") from exc
        for run_path in run_paths:
            try:
                run = load_run(run_path)
            except (FileNotFoundError, FormatError) as exc:
                raise DataError(str(exc)) from exc
            if only_success and run.outcome != SUCCESS:
                log.info("%s skipped: outcome %s (--only-success)", run_path, run.outcome)
                continue
            found = run_samples(run, speaks, images)
            if not found:
                raise DataError(
                    f"{run_path / schema.STEPS_FILE}: no usable steps ({len(run.steps)} "
                    "recorded; steps that did not parse, were refused or failed are skipped)")
            samples += found
    if not samples:
        raise DataError("no training samples: every input was skipped (--only-success keeps "
                        "only runs whose outcome is 'finished')")
    return samples


def base_speaks(folder: Path, cfg, settings=None) -> BaseSpeaks:
    """The base checkpoint's dialect and its processor, as `deskpilot run` will prompt the
    trained model: the settings' dialect unless "auto" (then the checkpoint's, from its
    config.json), with the settings' history length and pixel bounds."""
    from agent.dialects import dialect_for_checkpoint, get_dialect
    from vlm.processor import ImageSettings, Processor

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    name = getattr(settings, "dialect", "auto") or "auto"
    if name == "auto":
        name = dialect_for_checkpoint(config)
    kw = {}
    if settings is not None:
        kw = dict(history_n=settings.history_n, max_pixels=settings.max_pixels,
                  language=settings.language)
    dialect = get_dialect(name, **kw)
    processor = Processor(folder, cfg.image_token_id, ImageSettings.for_model(cfg))
    return BaseSpeaks(dialect, processor)
