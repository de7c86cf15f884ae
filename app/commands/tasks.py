"""`deskpilot tasks show|label|export-grounding`: look into the practice task suite.

    deskpilot tasks show N                 the task as JSON (layout, instruction, goal)
    deskpilot tasks label N [--image PNG]  every widget of its window: label, kind, box
    deskpilot tasks export-grounding [--seeds 0-19] --out DIR
        a ScreenSpot-v2-format grounding set (DIR/screenspot_practice.json, or the .json
        path given, and images/*.png beside it) rendered offscreen: per seed, the
        element the task's first step acts on, with a click instruction for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.commands.common import EXIT_USAGE, UsageError

GROUNDING_FILE = "screenspot_practice.json"
# Kinds whose element is found by its text; the rest are widgets without one (ScreenSpot's
# "icon" type covers icons and widgets).
TEXT_KINDS = ("button", "menu", "menu_item", "tab", "hover", "checkbox", "radio", "list_item")
_VERBS = {"click": "Click", "left_double": "Double-click", "right_single": "Right-click",
          "hover": "Hover over", "drag": "Drag"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deskpilot tasks", description="The practice task suite.")
    sub = p.add_subparsers(dest="what", required=True)
    show = sub.add_parser("show", help="print a task as JSON")
    show.add_argument("seed", type=int)
    show.add_argument("--difficulty", type=int, choices=range(4), metavar="0-3")
    label = sub.add_parser("label", help="label every widget of a task's window (JSON)")
    label.add_argument("seed", type=int)
    label.add_argument("--image", metavar="PNG", help="also save the rendered screenshot")
    label.add_argument("--screen", default="1280x800", metavar="WxH")
    export = sub.add_parser("export-grounding", help="write a ScreenSpot-format set")
    export.add_argument("--seeds", default="0-19", help="seeds, e.g. 0-99 (default 0-19)")
    export.add_argument("--out", required=True, metavar="DIR",
                        help=f"folder for {GROUNDING_FILE} and images/ (or a .json path)")
    export.add_argument("--screen", default="1280x800", metavar="WxH")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "seed", 0) < 0:
            raise UsageError(f"a task seed is a non-negative integer, got {args.seed}")
        if args.what == "show":
            from agent.tasks import generate

            print(json.dumps(generate(args.seed, args.difficulty).to_dict(), indent=1))  # noqa: T201
            return 0
        from app.commands.eval import _screen_size

        size = _screen_size(args.screen)
        if args.what == "label":
            return _label(args.seed, size, args.image)
        return _export(args.seeds, Path(args.out).expanduser(), size)
    except UsageError as exc:
        print(f"deskpilot tasks: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE


def _label(seed: int, size: tuple[int, int], image: str | None) -> int:
    from agent.tasks import dense_labels, generate
    from app.offscreen_env import OffscreenTaskEnv

    env = OffscreenTaskEnv(generate(seed), size)
    try:
        if image:
            env.observe().image.save(image)
        labels = dense_labels(env.state())
    finally:
        env.close()
    print(json.dumps(labels, indent=1, ensure_ascii=False))  # noqa: T201
    return 0


def grounding_sample(task, state: dict, image_name: str) -> dict | None:
    """The ScreenSpot-v2 record for the element the task's first expert step acts on."""
    from agent import actions as A
    from agent.tasks import dense_labels, next_move

    move = next_move(task, state)
    action = move.action
    point = action.start if isinstance(action, A.Drag) else getattr(action, "point", None)
    if point is None:
        return None  # a first step that points at nothing (a hotkey)
    dpr = float(state.get("device_pixel_ratio") or 1.0)
    x, y = point.x * dpr, point.y * dpr
    hits = [item for item in dense_labels(state)
            if item["box"][0] <= x < item["box"][2] and item["box"][1] <= y < item["box"][3]
            and item["kind"] not in ("dialog", "list")]
    if not hits:
        return None
    # The innermost element (a list row rather than the list).
    item = min(hits, key=lambda h: (h["box"][2] - h["box"][0]) * (h["box"][3] - h["box"][1]))
    x1, y1, x2, y2 = item["box"]
    kind = item["kind"]
    if task.kind == "single":
        instruction = task.instruction
    else:
        noun = {"field": f"the {item['label']} field", "slider": f"the {item['label']} slider",
                "menu": f"the {item['label']} menu"}.get(kind, f"'{item['label']}'")
        instruction = f"{_VERBS.get(action.name, 'Click')} {noun}"
    return {"img_filename": image_name, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "instruction": instruction,
            "data_type": "text" if kind in TEXT_KINDS else "icon",
            "data_source": "linux", "id": f"practice-{task.seed}"}


def _export(seeds_text: str, out: Path, size: tuple[int, int]) -> int:
    from agent.tasks import generate, parse_seeds
    from app.offscreen_env import OffscreenTaskEnv

    try:
        seeds = parse_seeds(seeds_text)
    except ValueError as exc:
        raise UsageError(f"--seeds: {exc}") from exc
    path = out if out.suffix.lower() == ".json" else out / GROUNDING_FILE
    images = path.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in seeds:
        task = generate(seed)
        env = OffscreenTaskEnv(task, size)
        try:
            name = f"practice_{seed:05d}.png"
            record = grounding_sample(task, env.state(), name)
            if record is not None:
                env.observe().image.save(images / name)
                records.append(record)
        finally:
            env.close()
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(records)} samples to {path} (images in {images})")  # noqa: T201
    return 0
