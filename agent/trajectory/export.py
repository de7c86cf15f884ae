"""Turn recorded runs into fine-tuning data: exactly the prompts the model saw, its replies
as targets, and the trainer settings that data needs.

Samples
-------
Per step (default): one sample per step whose reply parsed, built by
`turns.step_messages`: the step's recorded messages (system prompt, task, the last
history_n screenshots, every earlier reply, feedback) and its reply as the target. The
turn structure is the model's: each earlier reply is its own assistant turn, also once
dropped screenshots leave replies back to back.

Per run (`per_run=True`): every reply of a stretch of steps is a target. A run is SPLIT
at each step whose reply failed to parse: each stretch of good steps becomes one sample,
the conversation of its last step, whose targets are that stretch's replies; everything
before them (earlier stretches, the failed reply and the feedback the model got) is
context that is never trained. Earlier replies were written with their own screenshots
in view, which the last step's history may have dropped; per-step samples are exact.

Coordinates (`coords`): one convention for every reply of an export, history and target
alike. Every reply is written the way the run's dialect shows replies back to the model
(UI-TARS: points as <|box_start|>(x,y)<|box_end|>; the model generates these special
tokens, a decoder that skips special tokens drops them). "keep" leaves the numbers as the
model wrote them; "absolute" (pixels of the model image: Qwen2.5-VL, UI-TARS-1.5) or
"relative1000" (0..1000: UI-TARS-1.0, Qwen3-VL) re-parses each reply with the dialect and
rewrites its points through the Frame recorded with the step that wrote it.

Bad samples are skipped, never fatal: a sample whose text contains a literal image or
video placeholder of any format (`<image>`, `<video>`, `<audio>`, `<|vision_start|>`,
`<|image_pad|>`, ...; a trainer would take it for an image and misalign every image after
it), a missing image, or a reply that cannot be converted is left out with a warning
naming the run and step, in every format alike; `ExportResult.skipped_samples` counts them.

Images are the `_model.png` copies (the pixels the model saw, already a multiple of the
patch size), copied to OUT/images/<run>/ and referenced relative to OUT.

Layouts (records built in export_layouts.py)
--------------------------------------------
  llamafactory  OUT/<name>.json: [{"messages": [{"role", "content": "...<image>..."}],
                "images": [...]}], as many <image> as images, in order; registered in
                OUT/dataset_info.json ("formatting": "sharegpt", columns messages/images,
                role/content tags). Sharegpt needs user/assistant turns alternating after
                an optional system turn and has no per-turn loss flag: consecutive turns of
                one role are joined with the exact text Qwen's chat template puts between
                them ("<|im_end|>\\n<|im_start|>{role}\\n"), so the rendering is unchanged;
                per-step samples are trained with `mask_history: true` (only the last
                reply), per-run samples carry their context inside the first user turn
                and are trained with `mask_history: false`.
  swift         OUT/<name>.jsonl: {"messages", "images"}, a per-message "loss" on
                assistant turns (true only for targets); joins as for llamafactory
                (ms-swift pairs user/assistant turns itself and would glue them).
  qwenvl        OUT/<name>.json for Qwen-VL finetune: {"image": path | [paths],
                "conversations": [{"from": "human"|"gpt", "value"}]}. Only "human" is read
                as the user, so there is no system turn: the system prompt opens the first
                human turn. Its processor trains every gpt turn, so earlier replies are
                trained too and a sample holding a failed reply is skipped.
  uitars        OUT/<name>.jsonl: {"messages": [{role, content, loss_mask}], "images"},
                images written as <|vision_start|><|image_pad|><|vision_end|>, every turn
                as the model saw it (no joins), loss_mask 1 on targets.

Beside the llamafactory and swift data, a config with the settings computed from the data
(trainer_configs.py) that the trainer runs as is; the README shows the commands.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent import actions as A
from agent import frames as F
from agent.trajectory import trainer_configs as T
from agent.trajectory.export_layouts import (
    IMAGE_PLACEHOLDER,
    LAYOUTS,
    UITARS_IMAGE,
    llamafactory_dataset_info,
    record_images,
    record_placeholders,
)
from agent.trajectory.loader import Run, load_run
from agent.trajectory.turns import reply_steps, shown_reply, step_messages

log = logging.getLogger(__name__)

FORMATS = ("llamafactory", "swift", "qwenvl", "uitars")
COORDS = ("keep", "absolute", "relative1000")
SUCCESS = "finished"
# Texts a trainer reads as media placeholders or vision tokens (LLaMA-Factory and ms-swift:
# <image>/<video>/<audio>; Qwen's tokenizer: the vision special tokens).
PLACEHOLDER_TEXTS = (
    IMAGE_PLACEHOLDER, "<video>", "<audio>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
)

__all__ = [
    "COORDS", "FORMATS", "IMAGE_PLACEHOLDER", "UITARS_IMAGE", "ExportResult", "Sample",
    "convert_action", "convert_reply", "export_runs", "record_images", "record_placeholders",
]


@dataclass
class Sample:
    """One training sample: chat messages in the turns format with image paths relative
    to the export folder; assistant messages carry `loss` (a target) and `failed`."""

    name: str  # "<run folder> step <index>", for warnings
    messages: list[dict]
    per_run: bool
    sizes: list[tuple[int, int]]  # of the images, in order

    @property
    def images(self) -> list[str]:
        return [p["image"] for m in self.messages for p in m["content"] if p["type"] == "image"]


@dataclass
class ExportResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    samples: int = 0
    images: int = 0
    runs: int = 0
    skipped_runs: list[str] = field(default_factory=list)  # "path: why"
    skipped_steps: int = 0  # steps whose reply failed to parse or is missing
    skipped_samples: int = 0  # bad samples left out (see warnings)
    warnings: list[str] = field(default_factory=list)
    configs: dict[str, dict] = field(default_factory=dict)  # config file -> its values
    longest_tokens: int = 0
    max_pixels: int = 0


# --- coordinates ------------------------------------------------------------------------


def _convert_point(point: A.Point, frame: F.Frame, target: F.Frame) -> A.Point:
    x, y = F.image_to_model(target, *F.model_to_image(frame, point.x, point.y))
    return A.Point(round(x), round(y))


def convert_action(action: A.Action, frame: F.Frame, target: F.Frame) -> A.Action:
    """The action with its model-space points moved from `frame`'s space to `target`'s."""
    changes = {}
    for name in ("point", "start", "end"):
        value = getattr(action, name, None)
        if isinstance(value, A.Point):
            changes[name] = _convert_point(value, frame, target)
    return dataclasses.replace(action, **changes) if changes else action


def convert_reply(text: str, dialect, frame: F.Frame, coords: str) -> str:
    """The reply with its coordinates in the `coords` convention (see module docstring)."""
    if coords == "keep" or frame.space == coords:
        return text
    if frame.model_size is None:
        raise ValueError("the step's frame has no model_size; cannot convert coordinates")
    response = dialect.parse(text, tuple(frame.model_size))
    target = frame.with_model(frame.model_size, coords)
    actions = [convert_action(a, frame, target) for a in response.actions]
    return dialect.format_reply(response.thought, actions)


# --- samples ----------------------------------------------------------------------------


def failed(step: dict) -> bool:
    """A step whose reply is no target: it failed to parse, or there is none."""
    return bool(step.get("parse_error")) or not step.get("reply") or not step.get("messages")


class _Images:
    """Copies run images into OUT/images/<run>/ once, and names them relative to OUT.

    Two runs with the same folder name (exported from two machines) get distinct
    folders, so one never overwrites the other's screenshots."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.copied: dict[Path, tuple[int, int]] = {}  # copy -> (width, height)
        self._dirs: dict[Path, str] = {}  # run folder -> its folder name under images/

    def _dir(self, run: Run) -> str:
        key = run.path.resolve()
        if key not in self._dirs:
            taken = set(self._dirs.values())
            name, n = run.name, 1
            while name in taken:
                n += 1
                name = f"{run.name}-{n}"
            self._dirs[key] = name
        return self._dirs[key]

    def ref(self, run: Run, source: str) -> tuple[str, tuple[int, int]]:
        """(path relative to OUT, image size) of the run's image at absolute `source`."""
        from PIL import Image

        rel = Path("images") / self._dir(run) / Path(source).name
        dst = self.out_dir / rel
        if dst not in self.copied:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dst)
            with Image.open(dst) as im:  # reads the header only
                self.copied[dst] = im.size
        return rel.as_posix(), self.copied[dst]


class _RunSamples:
    """Builds the samples of one run (see the module docstring)."""

    def __init__(self, run: Run, images: _Images, coords: str) -> None:
        self.run = run
        self.images = images
        self.coords = coords
        self._dialect = None
        self._shown: dict[str, str] = {}
        self._position = {id(s): i for i, s in enumerate(run.steps)}

    @property
    def dialect(self):
        if self._dialect is None:
            from agent.dialects import get_dialect

            self._dialect = get_dialect(self.run.meta["dialect"])
        return self._dialect

    def _as_shown(self, text: str) -> str:
        if text not in self._shown:
            self._shown[text] = shown_reply(self.dialect, text)
        return self._shown[text]

    def _reply_text(self, text: str, source: dict) -> str:
        """`text`, written at step `source`, in the export's one convention."""
        frame = F.Frame.from_dict(source["frame"])
        if not source.get("parse_error") and self.coords not in ("keep", frame.space):
            text = convert_reply(text, self.dialect, frame, self.coords)
        return self._as_shown(text)

    def sample(self, position: int, targets: set[int], per_run: bool) -> Sample:
        step = self.run.steps[position]
        name = f"{self.run.path} step {step.get('index')}"
        sources = [*reply_steps(self.run, step), step]
        messages = []
        for message in step_messages(self.run, step):
            if message["role"] != "assistant":
                messages.append(message)
                continue
            source = sources.pop(0)
            text = "".join(p["text"] for p in message["content"] if p["type"] == "text")
            # A reply without its step (a hand-edited run) is converted with this step's
            # frame and never trained.
            known = source is not None
            messages.append({
                "role": "assistant",
                "content": [{"type": "text", "text": self._reply_text(text, source or step)}],
                "loss": known and self._position[id(source)] in targets and not failed(source),
                "failed": known and failed(source),
            })
        _check_placeholders(messages, sources_of(self.run, step))
        sizes = []  # images are copied only for a sample that passed the checks
        for message in messages:
            for k, part in enumerate(message["content"]):
                if part["type"] == "image":
                    rel, size = self.images.ref(self.run, part["image"])
                    message["content"][k] = {"type": "image", "image": rel}
                    sizes.append(size)
        return Sample(name, messages, per_run, sizes)

    def plan(self, per_run: bool) -> list[tuple[int, set[int]]]:
        """(step position to build from, positions whose replies are its targets)."""
        good = [i for i, s in enumerate(self.run.steps) if not failed(s)]
        if not per_run:
            return [(i, {i}) for i in good]
        stretches: list[list[int]] = []
        for i in good:
            if stretches and stretches[-1][-1] == i - 1:
                stretches[-1].append(i)
            else:
                stretches.append([i])
        return [(s[-1], set(s)) for s in stretches]


def sources_of(run: Run, step: dict) -> list[str]:
    """Where each message of `step`'s sample comes from, for warnings."""
    names, replies = [], iter([*reply_steps(run, step), step])
    for message in [*step["messages"], {"role": "assistant"}]:
        if message.get("role") == "assistant":
            source = next(replies)
            names.append(f"the reply of step {source['index']}" if source else "a reply")
        else:
            names.append(f"a {message.get('role', 'user')} message of step {step['index']}")
    return names


def _check_placeholders(messages: list[dict], where: list[str]) -> None:
    for message, origin in zip(messages, where):
        for part in message["content"]:
            if part["type"] != "text":
                continue
            for token in PLACEHOLDER_TEXTS:
                if token in part["text"]:
                    raise ValueError(
                        f"{origin} contains the literal text {token!r}, which trainers read "
                        "as an image or video placeholder (it would misalign the images)"
                    )


# --- writing ----------------------------------------------------------------------------


def _write(path: Path, records: list[dict], jsonl: bool) -> None:
    with open(path, "w", encoding="utf-8") as f:
        if jsonl:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            json.dump(records, f, ensure_ascii=False, indent=1)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _base_model(runs: list[Run], dialect: str) -> str:
    """The checkpoint the runs were recorded with when it is a folder or hub id, else the
    dialect's published model."""
    for run in runs:
        model = str(run.meta.get("model", ""))
        if model and Path(model).is_dir():
            return str(Path(model).resolve())
        if _HUB_ID.match(model):
            return model
    return T.family(dialect)[2]


def _write_configs(result: ExportResult, fmt: str, data_file: Path, dataset_name: str,
                   stats: T.DataStats, runs: list[Run], per_run: bool) -> None:
    dialects = Counter(run.meta.get("dialect", "") for run in runs)
    dialect = dialects.most_common(1)[0][0]
    lf_template, swift_template, _ = T.family(dialect)
    if len({T.family(d)[:2] for d in dialects}) > 1:
        _warn(result, f"runs of several model families ({', '.join(sorted(dialects))}); the "
              f"trainer config uses the templates of {dialect}")
    model = _base_model(runs, dialect)
    out = result.out_dir
    if fmt == "llamafactory":
        values = T.llamafactory_config(out, dataset_name, stats, template=lf_template,
                                       model=model, mask_history=not per_run)
        path = T.write_config(out / T.LLAMAFACTORY_FILE, values, stats, "LLaMA-Factory")
    elif fmt == "swift":
        values = T.swift_config(out, data_file, stats, template=swift_template, model=model)
        path = T.write_config(out / T.SWIFT_FILE, values, stats, "ms-swift")
    else:
        return
    result.files.append(path)
    result.configs[str(path)] = values


def _local_tokenizer(runs: list[Run]) -> Path | None:
    """The runs' checkpoint folder when it holds a tokenizer (exact token counts)."""
    for run in runs:
        model = Path(str(run.meta.get("model", "")))
        if model.is_dir() and (model / "tokenizer_config.json").is_file():
            return model
    return None


def _measure(measured: list[tuple[Sample, int]], tokenizer) -> T.DataStats:
    count = T.tokenizer_counter(tokenizer) if tokenizer else T.byte_count
    stats = T.DataStats(count_text=count, exact=bool(tokenizer))
    for sample, factor in measured:
        stats.add(sample.name, sample.messages, sample.sizes, factor)
    return stats


def _warn(result: ExportResult, message: str) -> None:
    log.warning("%s", message)
    result.warnings.append(message)


def export_runs(
    run_paths: Iterable[str | os.PathLike],
    fmt: str,
    out_dir: str | os.PathLike,
    *,
    only_success: bool = False,
    per_run: bool = False,
    coords: str = "keep",
    dataset_name: str = "deskpilot",
    tokenizer: str | os.PathLike | None = None,
) -> ExportResult:
    """Write the runs as `fmt` training data into `out_dir` (see the module docstring).

    `tokenizer`: a checkpoint folder whose tokenizer counts the text tokens exactly for
    the trainer configs; by default the runs' own checkpoint when it is a local folder
    with a tokenizer, else an upper bound is used."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if coords not in COORDS:
        raise ValueError(f"unknown coordinate convention {coords!r}; choose one of {COORDS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(out_dir=out)
    images = _Images(out)
    to_record, suffix = LAYOUTS[fmt]
    records: list[dict] = []
    measured: list[tuple[Sample, int]] = []  # with its image factor, for the configs
    exported: list[Run] = []
    for path in run_paths:
        run = load_run(path)
        if only_success and run.outcome != SUCCESS:
            result.skipped_runs.append(f"{run.path}: outcome {run.outcome!r}")
            continue
        builder = _RunSamples(run, images, coords)
        result.skipped_steps += sum(1 for s in run.steps if failed(s))
        before, plan = len(records), builder.plan(per_run)
        for position, targets in plan:
            step = run.steps[position]
            try:
                sample = builder.sample(position, targets, per_run)
                record = to_record(sample)
                if record_placeholders(record, fmt) != len(record_images(record)):
                    raise ValueError("its image placeholders and images differ in number")
                factor = builder.dialect.image_factor
            except (ValueError, FileNotFoundError, A.ParseError) as exc:
                result.skipped_samples += 1
                _warn(result, f"skipped {run.path} step {step.get('index')}: {exc}")
                continue
            measured.append((sample, factor))
            records.append(record)
        if len(records) == before:
            why = "every sample skipped (see warnings)" if plan else "no step with a usable reply"
            result.skipped_runs.append(f"{run.path}: {why}")
            continue
        result.runs += 1
        exported.append(run)
    data_file = out / f"{dataset_name}{suffix}"
    _write(data_file, records, jsonl=suffix == ".jsonl")
    result.files.append(data_file)
    if fmt == "llamafactory":
        info = out / "dataset_info.json"
        info.write_text(
            json.dumps(llamafactory_dataset_info(dataset_name, data_file.name), indent=2),
            encoding="utf-8",
        )
        result.files.append(info)
    result.samples = len(records)
    result.images = len({name for record in records for name in record_images(record)})
    if records:
        stats = _measure(measured, tokenizer or _local_tokenizer(exported))
        result.longest_tokens, result.max_pixels = stats.longest_tokens, stats.max_pixels
        _write_configs(result, fmt, data_file, dataset_name, stats, exported, per_run)
    log.info("exported %d samples from %d runs to %s", result.samples, result.runs, out)
    return result
