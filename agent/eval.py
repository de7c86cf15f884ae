"""Measuring a policy: task success on the practice suite, and grounding accuracy.

Task evaluation runs each seed's practice task through the real loop (agent/loop.py),
safety policy and an `Env` (the live desktop, or the in-process offscreen window),
records every task as a normal run (so it can be replayed, reported and trained on),
and judges the window's final state with the task's checker. A task succeeds when
the checker passes and the policy ended the run itself (outcome "finished").

Grounding evaluation reads ScreenSpot, ScreenSpot-v2 and ScreenSpot-Pro annotations
(image file, instruction, target box, data type, platform) and counts a sample as
correct when the first point the policy acts on lands inside the box, through the
same path as a live step: the dialect's prompt and resize, the model, the parser and
agent/frames.py. Results are broken down by data type and platform as those
benchmarks report them.

Nothing here imports Qt or torch: the screen and the policy are handed in.
"""

from __future__ import annotations

import html
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent import actions as A
from agent import frames as F
from agent.loop import Agent
from agent.protocols import Dialect, Env, Observation, Policy
from agent.safety import SafetyPolicy
from agent.tasks import Task, check, generate

log = logging.getLogger(__name__)

# --- task evaluation --------------------------------------------------------------------


class TaskScreen(Protocol):
    """A practice task shown somewhere the agent can act: its Env and its state."""

    env: Env

    def read_state(self) -> dict | None: ...

    def close(self) -> None: ...


class FrameTracker:
    """Wraps an Env and remembers the Frame of the latest observation (for the expert,
    which needs to know how the screenshot maps onto the screen), and, given the
    window's `read_state`, the dense labels of every screenshot (agent.tasks.dense_labels:
    each visible widget's label, kind and box in the screenshot's pixels)."""

    def __init__(self, env: Env, read_state: Callable[[], dict | None] | None = None):
        self.env = env
        self.read_state = read_state
        self.frame: F.Frame | None = None
        self.labels: list[list[dict]] = []  # one list per observation, in order

    def observe(self) -> Observation:
        observation = self.env.observe()
        self.frame = observation.frame
        state = self.read_state() if self.read_state is not None else None
        if state:
            from agent.tasks import dense_labels

            sx, sy = observation.frame.scale
            origin = (round(observation.frame.monitor.left * sx),
                      round(observation.frame.monitor.top * sy))
            self.labels.append(dense_labels(state, origin))
        return observation

    def execute(self, action: A.Action):
        return self.env.execute(action)

    def latest_frame(self) -> F.Frame:
        if self.frame is None:
            raise RuntimeError("no screenshot has been taken yet")
        return self.frame

    def __getattr__(self, name: str) -> Any:  # monitors(), interrupt(), close()
        return getattr(self.env, name)


@dataclass
class TaskResult:
    seed: int
    kind: str
    success: bool
    steps: int
    seconds_per_step: float
    run: str
    skill: str = ""
    outcome: str = ""
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The public record: exactly the keys `deskpilot eval tasks` promises."""
        return {"seed": self.seed, "kind": self.kind, "success": self.success,
                "steps": self.steps, "seconds_per_step": self.seconds_per_step,
                "run": self.run}


def settled_state(screen: TaskScreen, timeout: float = 2.0) -> dict | None:
    """The window's state once two reads 100 ms apart agree (a last change may still be
    on its way from another process)."""
    deadline = time.monotonic() + timeout
    last = screen.read_state()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        current = screen.read_state()
        if current == last and current is not None:
            return current
        last = current
    return last


def run_task(
    task: Task,
    screen: TaskScreen,
    policy: Policy,
    dialect: Dialect,
    *,
    runs_dir: str | os.PathLike,
    model: str,
    backend: str,
    max_steps: int,
    safety: SafetyPolicy,
    env_name: str,
    settle_wait: float = 0.0,
    chat_options: dict | None = None,
) -> TaskResult:
    """Run one practice task with the real loop, record it, and check the result."""
    from agent.trajectory import Recorder

    env = screen.env
    monitors = env.monitors() if hasattr(env, "monitors") else []
    recorder = Recorder(
        runs_dir,
        task=task.instruction,
        dialect=dialect.name,
        model=model,
        backend=backend,
        monitors=[m.to_dict() if hasattr(m, "to_dict") else dict(m) for m in monitors],
        extra={"practice_task": {"seed": task.seed, "skill": task.skill, "kind": task.kind,
                                 "difficulty": task.difficulty},
               "env": env_name, "max_steps": max_steps, "safety": safety.level},
    )
    agent = Agent(policy, env, dialect, max_steps=max_steps, safety=safety,
                  chat_options=chat_options)
    steps = 0
    started = time.perf_counter()
    labels = env.labels if isinstance(env, FrameTracker) and env.read_state else None
    try:
        for step in agent.run(task.instruction):
            recorder.write_step(step)
            if labels is not None and step.index < len(labels):
                _append_labels(recorder.run_dir, step.index, labels[step.index])
            steps += 1
    except BaseException as exc:
        recorder.finish("error", f"{type(exc).__name__}: {exc}")
        raise
    elapsed = time.perf_counter() - started
    state = settled_state(screen, settle_wait) if settle_wait > 0 else screen.read_state()
    verdict = check(task, state)
    outcome = agent.outcome or "error"
    success = verdict.success and outcome == "finished"
    failures = list(verdict.failures)
    if outcome != "finished":
        failures.append(f"the run ended with {outcome}: {agent.final_message}")
    recorder.meta["extra"]["check"] = {"success": success, "failures": failures,
                                       "final_state": state}
    recorder.finish(outcome, agent.final_message)
    return TaskResult(seed=task.seed, kind=task.kind, success=success, steps=steps,
                      seconds_per_step=round(elapsed / max(1, steps), 4),
                      run=str(recorder.run_dir), skill=task.skill, outcome=outcome,
                      failures=failures)


LABELS_FILE = "labels.jsonl"  # beside steps.jsonl: the dense labels of each screenshot


def _append_labels(run_dir: Path, index: int, labels: list[dict]) -> None:
    with open(run_dir / LABELS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"index": index, "labels": labels}, ensure_ascii=False) + "\n")


def evaluate_tasks(
    seeds: Iterable[int],
    *,
    open_screen: Callable[[Task], TaskScreen],
    make_policy: Callable[[Task, TaskScreen, FrameTracker], Policy],
    dialect: Dialect,
    on_result: Callable[[TaskResult], None] | None = None,
    difficulty: int | None = None,
    **run_options: Any,
) -> tuple[dict, list[TaskResult]]:
    """Every seed's task, one after the other; returns (the JSON summary, the results).

    open_screen(task) shows the task; make_policy(task, screen, tracker) gives the
    policy for it (a model is built once by the caller and returned each time; the
    expert and scripts are per task). The screen's env is wrapped in a FrameTracker.
    difficulty (0..3) fixes the tasks' difficulty; None draws it from each seed."""
    results: list[TaskResult] = []
    # The first resize imports qwen_vl_utils (and torch): seconds that belong to no task.
    dialect.model_size(640, 480)
    for seed in seeds:
        task = generate(seed, difficulty)
        screen = open_screen(task)
        try:
            tracker = FrameTracker(screen.env, screen.read_state)
            screen.env = tracker
            policy = make_policy(task, screen, tracker)
            result = run_task(task, screen, policy, dialect, **run_options)
        finally:
            screen.close()
        results.append(result)
        if on_result is not None:
            on_result(result)
    return summarize(results), results


def summarize(results: list[TaskResult]) -> dict:
    rate = sum(r.success for r in results) / len(results) if results else 0.0
    return {"success_rate": round(rate, 6), "tasks": [r.to_json() for r in results]}


def tasks_report_html(results: list[TaskResult], title: str = "deskpilot eval tasks") -> str:
    """A self-contained page: the success rate, per skill, and every task with its run."""
    e = html.escape
    by_skill: dict[str, list[TaskResult]] = {}
    for r in results:
        by_skill.setdefault(r.skill, []).append(r)
    rate = summarize(results)["success_rate"]
    skill_rows = "".join(
        f"<tr><td>{e(skill)}</td><td>{sum(r.success for r in rs)}/{len(rs)}</td></tr>"
        for skill, rs in sorted(by_skill.items()))
    task_rows = "".join(
        f"<tr class='{'ok' if r.success else 'bad'}'><td>{r.seed}</td><td>{e(r.skill)}</td>"
        f"<td>{e(r.kind)}</td><td>{'yes' if r.success else 'no'}</td><td>{r.steps}</td>"
        f"<td>{r.seconds_per_step:.3f}</td><td>{e(r.outcome)}</td>"
        f"<td>{e('; '.join(r.failures))}</td>"
        f"<td><a href='{e(Path(r.run).as_uri())}'>{e(Path(r.run).name)}</a></td></tr>"
        for r in results)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "tr.ok td:nth-child(4){color:#1a7f37} tr.bad td:nth-child(4){color:#c62828}"
        "</style></head><body>"
        f"<h1>{e(title)}</h1><p>Success rate: <b>{rate:.1%}</b> "
        f"({sum(r.success for r in results)} of {len(results)} tasks)</p>"
        f"<h2>By skill</h2><table><tr><th>skill</th><th>solved</th></tr>{skill_rows}</table>"
        "<h2>Tasks</h2><table><tr><th>seed</th><th>skill</th><th>kind</th><th>success</th>"
        "<th>steps</th><th>s/step</th><th>outcome</th><th>why not</th><th>run</th></tr>"
        f"{task_rows}</table></body></html>"
    )


# --- grounding evaluation ----------------------------------------------------------------

GROUNDING_FORMATS = ("screenspot", "screenspot-v2", "screenspot-pro")
# ScreenSpot's data_source -> the platform group its paper reports.
_SOURCE_PLATFORM = {"ios": "mobile", "android": "mobile", "windows": "desktop",
                    "macos": "desktop", "linux": "desktop"}


class GroundingFormatError(ValueError):
    """An annotation file that is not in a ScreenSpot format."""


@dataclass(frozen=True)
class GroundingSample:
    index: int
    img_filename: str
    instruction: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    data_type: str
    platform: str
    normalized: bool = False  # box given in 0..1 of the image size


def detect_format(entries: list[dict]) -> str:
    """ScreenSpot-Pro has ui_type/img_size/group and x1,y1,x2,y2 boxes; ScreenSpot and
    ScreenSpot-v2 have data_type/data_source and x,y,w,h boxes."""
    first = entries[0]
    if any(k in first for k in ("ui_type", "img_size", "group", "application")):
        return "screenspot-pro"
    return "screenspot-v2"


def load_grounding(path: str | os.PathLike, fmt: str | None = None) -> list[GroundingSample]:
    """Read a ScreenSpot-format annotation file (a JSON list)."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GroundingFormatError(f"annotation file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise GroundingFormatError(f"{path} is not JSON: {exc}") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict)
                                                               for e in entries):
        raise GroundingFormatError(f"{path} must hold a non-empty JSON list of samples")
    if fmt is not None and fmt not in GROUNDING_FORMATS:
        raise GroundingFormatError(f"unknown format {fmt!r}; use one of {GROUNDING_FORMATS}")
    fmt = fmt or detect_format(entries)
    samples = []
    for i, entry in enumerate(entries):
        missing = [k for k in ("img_filename", "instruction", "bbox") if k not in entry]
        if missing:
            raise GroundingFormatError(f"sample {i} of {path} has no {', '.join(missing)}")
        bbox = entry["bbox"]
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):
            raise GroundingFormatError(f"sample {i}: bbox must be four numbers, got {bbox!r}")
        if fmt == "screenspot-pro":
            x1, y1, x2, y2 = bbox
            data_type = str(entry.get("ui_type", entry.get("data_type", "unknown")))
            platform = str(entry.get("platform", "unknown"))
        else:
            x, y, w, h = bbox
            x1, y1, x2, y2 = x, y, x + w, y + h
            data_type = str(entry.get("data_type", "unknown"))
            source = str(entry.get("data_source", entry.get("platform", "unknown")))
            platform = _SOURCE_PLATFORM.get(source.lower(), "web" if source != "unknown"
                                            else "unknown")
        if x2 <= x1 or y2 <= y1:
            raise GroundingFormatError(f"sample {i}: bbox {bbox!r} has no area ({fmt})")
        samples.append(GroundingSample(
            index=i, img_filename=str(entry["img_filename"]),
            instruction=str(entry["instruction"]), box=(x1, y1, x2, y2),
            data_type=data_type, platform=platform,
            normalized=all(0 <= v <= 1 for v in bbox) and any(isinstance(v, float) for v in bbox),
        ))
    return samples


def find_image(sample: GroundingSample, folders: list[Path]) -> Path:
    for folder in folders:
        candidate = folder / sample.img_filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"image {sample.img_filename!r} not found in "
                            f"{', '.join(str(f) for f in folders)}")


def ground_one(image, instruction: str, policy: Policy, dialect: Dialect,
               chat_options: dict | None = None) -> tuple[A.Point | None, str, str | None]:
    """Where the policy points for `instruction` on `image`: (point in image pixels,
    raw reply, error). The live path: resize, prompt, model, parser, frames."""
    from PIL import Image as PILImage

    width, height = image.size
    model_size = tuple(dialect.model_size(width, height))
    frame = F.Frame(F.Rect(0, 0, width, height), (width, height)).with_model(model_size,
                                                                             dialect.space)
    model_image = image if image.size == model_size else image.resize(
        model_size, PILImage.Resampling.BICUBIC)
    messages = dialect.build_messages(instruction, [], model_image)
    reply = policy.chat(messages, **(chat_options or {}))
    text = reply if isinstance(reply, str) else str(getattr(reply, "text", ""))
    try:
        response = dialect.parse(text, model_size)
    except A.ParseError as exc:
        return None, text, f"unparseable reply: {exc}"
    for action in response.actions:
        screen = F.to_screen(frame, action)
        if isinstance(screen, A.PointerAction):
            return screen.screen, text, None
        if isinstance(screen, A.Drag):
            return screen.screen_start, text, None
    return None, text, "the reply points at nothing"


def _breakdown(rows: list[tuple[str, bool]]) -> dict:
    out: dict[str, dict] = {}
    for key, hit in rows:
        entry = out.setdefault(key, {"correct": 0, "total": 0})
        entry["correct"] += int(hit)
        entry["total"] += 1
    for entry in out.values():
        entry["accuracy"] = round(entry["correct"] / entry["total"], 6)
    return dict(sorted(out.items()))


def evaluate_grounding(
    samples: list[GroundingSample],
    policy: Policy,
    dialect: Dialect,
    image_folders: list[Path],
    *,
    chat_options: dict | None = None,
    on_sample: Callable[[dict], None] | None = None,
) -> dict:
    """Accuracy over `samples`, overall and by data type, platform and both."""
    from PIL import Image

    records = []
    for sample in samples:
        with Image.open(find_image(sample, image_folders)) as opened:
            image = opened.convert("RGB")
        x1, y1, x2, y2 = sample.box
        if sample.normalized:
            w, h = image.size
            x1, y1, x2, y2 = x1 * w, y1 * h, x2 * w, y2 * h
        point, reply, error = ground_one(image, sample.instruction, policy, dialect,
                                         chat_options)
        hit = point is not None and x1 <= point.x <= x2 and y1 <= point.y <= y2
        record = {"index": sample.index, "img_filename": sample.img_filename,
                  "instruction": sample.instruction, "data_type": sample.data_type,
                  "platform": sample.platform, "bbox": [x1, y1, x2, y2],
                  "point": [point.x, point.y] if point is not None else None,
                  "hit": hit, "reply": reply, "error": error}
        records.append(record)
        if on_sample is not None:
            on_sample(record)
    correct = sum(r["hit"] for r in records)
    return {
        "accuracy": round(correct / len(records), 6) if records else 0.0,
        "correct": correct,
        "total": len(records),
        "by_data_type": _breakdown([(r["data_type"], r["hit"]) for r in records]),
        "by_platform": _breakdown([(r["platform"], r["hit"]) for r in records]),
        "by_platform_and_type": _breakdown(
            [(f"{r['platform']}/{r['data_type']}", r["hit"]) for r in records]),
        "samples": records,
    }
