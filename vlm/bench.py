"""`deskpilot bench step`: time one agent step, then a second one that reuses the prefix.

Step 1: a system prompt, a task and a synthetic 1920x1080 screenshot -> preprocess, vision,
prefill, N decode tokens. Step 2: the same conversation plus the step-1 reply and a NEW
screenshot, reported twice: with our prefix and image caches (the engine prefills only the
suffix and encodes only the new image), and with both off (everything recomputed: the same
work transformers does). `--compare transformers` runs the same steps with transformers'
class for the family (Qwen3VLMoe-, Qwen3VL- or Qwen2_5_VLForConditionalGeneration, its
default attention/experts implementations) holding the very same weight tensors, and its
processor; transformers has no prefix reuse, so its step 2 recomputes everything.

Every figure is the min / median / max over `--repeat` runs (ours and transformers'
interleaved, so a busy machine slows both alike); a run's total is that run's own sum of
phases. `--decode` picks how our decode step runs (default: compiled on the CPU, CUDA graphs
on CUDA); the compile happens in the warm-up.

Without `--checkpoint` the architecture comes from assets/configs/<config>.json with random
weights and a small synthetic tokenizer (vlm.synthetic); the vocabulary size and every
tensor shape are the architecture's own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "assets" / "configs"
CONFIGS = ("tiny", "small", "qwen3-vl-30b-a3b", "uitars-tiny", "uitars-1.5-7b",
           "qwen3.5-35b-a3b")
PHASES = ("preprocess", "vision", "prefill", "decode")
# Qwen3-VL's own preprocessor bounds (shortest/longest edge in pixels^2)
QWEN3_VL_MIN_PIXELS, QWEN3_VL_MAX_PIXELS = 65536, 16777216
# Qwen2.5-VL / UI-TARS-1.5's preprocessor_config.json bounds
QWEN25_VL_MIN_PIXELS, QWEN25_VL_MAX_PIXELS = 3136, 12845056

SYSTEM = ("You are a GUI agent. You are given a task and your action history, with "
          "screenshots. You need to perform the next action to complete the task. "
          "Output format: Thought: ... Action: click(start_box='(x,y)') | type(content='') | "
          "hotkey(key='') | scroll(direction='down') | finished(). ") * 3

log = logging.getLogger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="deskpilot bench step", description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=CONFIGS, default="small",
                   help="architecture (assets/configs/NAME.json) when no --checkpoint is given")
    p.add_argument("--checkpoint", help="a checkpoint folder or hub id (real weights)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None)
    p.add_argument("--dtype", choices=("auto", "bfloat16", "float32"), default="auto")
    p.add_argument("--compare", choices=("transformers",), default=None)
    p.add_argument("--json", dest="json_out", help="write the results here")
    p.add_argument("--decode-tokens", type=int, default=60)
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the steps this many times; report min/median/max of each figure")
    p.add_argument("--decode", choices=("auto", "eager", "compile", "cuda_graph"),
                   default="auto",
                   help="our decode step (auto: compile on the CPU, cuda_graph on CUDA)")
    p.add_argument("--screen", default="1920x1080", help="screenshot size WIDTHxHEIGHT")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def screenshot(seed: int, width: int = 1920, height: int = 1080):
    """A deterministic desktop-like picture: gradient wallpaper, windows, text-like rows."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    base = (60 + 120 * y * np.array([0.2, 0.4, 0.9]) + 60 * x * np.array([0.8, 0.3, 0.1]))
    img = Image.fromarray(np.broadcast_to(base, (height, width, 3)).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        w, h = max(width // 4, 8), max(height // 3, 8)
        x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        d.rectangle([x0, y0, x0 + w, y0 + h], fill=tuple(int(v) for v in rng.integers(180, 256,
                                                                                      3)))
        d.rectangle([x0, y0, x0 + w, y0 + 24], fill=(40, 40, 60))
        for row in range(y0 + 40, y0 + h - 20, 18):
            d.text((x0 + 10, row), f"lorem ipsum {rng.integers(1000)}", fill=(20, 20, 20))
    return img


def warmup_messages() -> list[dict]:
    """A small image: pays first-call costs (allocator, lazy init, kernel compiles) cheaply."""
    return [{"role": "user", "content": [{"type": "text", "text": "warm up"},
                                         {"type": "image", "image": screenshot(0, 640, 480)}]}]


def messages_for(step: int, previous_reply: str = "", screen=(1920, 1080)) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": [
                {"type": "text", "text": "Task: open the settings and turn on dark mode."},
                {"type": "image", "image": screenshot(1, *screen)}]}]
    if step == 2:
        msgs += [{"role": "assistant", "content": previous_reply},
                 {"role": "user", "content": [{"type": "image",
                                               "image": screenshot(2, *screen)}]}]
    return msgs


# -- our engine ----------------------------------------------------------------------------


def synthetic_folder(config: str, workdir: Path) -> Path:
    """config.json (special ids remapped to the small tokenizer) + tokenizer + preprocessor."""
    from vlm.config import SUPPORTED_ARCHITECTURES
    from vlm.synthetic import build_tokenizer, special_ids, write_preprocessor_config

    cfg = json.loads((CONFIG_DIR / f"{config}.json").read_text())
    tok = build_tokenizer(workdir)
    cfg.update(special_ids(tok))
    (workdir / "config.json").write_text(json.dumps(cfg, indent=2))
    family = SUPPORTED_ARCHITECTURES[cfg["architectures"][0]]
    if family == "qwen2_5_vl":
        write_preprocessor_config(workdir, QWEN25_VL_MIN_PIXELS, QWEN25_VL_MAX_PIXELS, family)
    else:
        write_preprocessor_config(workdir, QWEN3_VL_MIN_PIXELS, QWEN3_VL_MAX_PIXELS)
    return workdir


def build_engine(args, workdir: Path):
    from vlm.engine import Engine, load, pick_device_dtype
    from vlm.processor import ImageSettings, Processor
    from vlm.weights import read_config

    if args.checkpoint:
        engine = load(args.checkpoint, device=args.device, dtype=args.dtype,
                      decode=bench_decode_mode(args.decode, pick_device_dtype(args.device)[0]))
        return engine, None
    folder = synthetic_folder(args.config, workdir)
    cfg = read_config(folder)
    device, dtype = pick_device_dtype(args.device, args.dtype)
    model = random_model(cfg, device, dtype, args.seed)
    model.eval()
    processor = Processor(folder, cfg.image_token_id, ImageSettings.for_model(cfg))
    return Engine(model, processor, cfg, name=args.config,
                  decode=bench_decode_mode(args.decode, device)), folder


def bench_decode_mode(decode: str, device) -> str:
    """The benchmark measures the engine at its fastest: "auto" compiles on the CPU."""
    if decode != "auto":
        return decode
    return "cuda_graph" if device.type == "cuda" else "compile"


def check_fits(cfg, device, dtype) -> None:
    """Refuse up front (instead of being killed) when the random weights cannot fit."""
    import torch

    from vlm.model import QwenVL

    with torch.device("meta"):
        n = sum(p.numel() for p in QwenVL(cfg).parameters())
    need = n * torch.empty((), dtype=dtype).element_size()
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > 0.9 * free:
        raise SystemExit(f"{n / 1e9:.1f}B parameters need {need / 2**30:.1f} GiB in "
                         f"{str(dtype).replace('torch.', '')} but {device} has "
                         f"{free / 2**30:.1f} GiB free; pick a smaller --config or device")


def random_model(cfg, device, dtype, seed: int):
    """Our model for `cfg` with random weights of a useful scale, built in place on `device`
    in `dtype` (refused up front when it cannot fit)."""
    import torch

    from vlm.model import QwenVL
    from vlm.synthetic import randomize_

    check_fits(cfg, device, dtype)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = QwenVL(cfg)
    finally:
        torch.set_default_dtype(old)
    randomize_(model, seed)
    return model


# the rows of one run: (step, caches label); step 2 twice, with and without our caches
ROWS = ((1, "n/a"), (2, "prefix+image"), (2, "off"))
ROW_LABELS = {(1, "n/a"): "step 1",
              (2, "prefix+image"): "step 2, prefix and image caches on",
              (2, "off"): "step 2, caches off (the same work as transformers)"}


def run_ours(engine, n_tokens: int, screen=(1920, 1080)) -> list[dict]:
    """One run: step 1, step 2 continuing it (caches on), step 2 again from cold caches."""
    results, reply = [], ""
    for step, caches in ROWS:
        if caches == "off":
            _fresh(engine)
        r = engine.chat(messages_for(step, reply, screen), max_new_tokens=n_tokens,
                        ignore_end=True)
        if step == 1:
            reply = r.text
        results.append({"timings": {k: r.timings[k] for k in PHASES},
                        "tokens": len(r.token_ids), "stats": dict(engine.last_stats),
                        "reply": r.text})
    return results


# -- transformers on the same weights ------------------------------------------------------


# family -> transformers module, config class, model class, vision and text rotary classes
TRANSFORMERS_CLASSES = {
    "qwen3_vl_moe": ("qwen3_vl_moe.modeling_qwen3_vl_moe", "Qwen3VLMoeConfig",
                     "Qwen3VLMoeForConditionalGeneration", "Qwen3VLMoeVisionRotaryEmbedding",
                     "Qwen3VLMoeTextRotaryEmbedding"),
    "qwen3_vl": ("qwen3_vl.modeling_qwen3_vl", "Qwen3VLConfig", "Qwen3VLForConditionalGeneration",
                 "Qwen3VLVisionRotaryEmbedding", "Qwen3VLTextRotaryEmbedding"),
    "qwen2_5_vl": ("qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLConfig",
                   "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLVisionRotaryEmbedding",
                   "Qwen2_5_VLRotaryEmbedding"),
    "qwen3_5_moe": ("qwen3_5_moe.modeling_qwen3_5_moe", "Qwen3_5MoeConfig",
                    "Qwen3_5MoeForConditionalGeneration", "Qwen3_5MoeVisionRotaryEmbedding",
                    "Qwen3_5MoeTextRotaryEmbedding"),
    "qwen3_5": ("qwen3_5.modeling_qwen3_5", "Qwen3_5Config", "Qwen3_5ForConditionalGeneration",
                "Qwen3_5VisionRotaryEmbedding", "Qwen3_5TextRotaryEmbedding"),
}


def transformers_twin(engine):
    """transformers' model holding our tensors (experts as transposed views, no copy)."""
    import importlib

    import torch

    from vlm.weights import checkpoint_name

    module, config_cls, model_cls, vision_rope, text_rope = TRANSFORMERS_CLASSES[
        engine.cfg.family]
    m = importlib.import_module(f"transformers.models.{module}")
    raw = {k: v for k, v in engine.cfg.raw.items() if not k.startswith("_")}
    hcfg = getattr(m, config_cls)(**raw)
    with torch.device("meta"):
        hf = getattr(m, model_cls)(hcfg)
    sd = {}
    for name, t in engine.model.state_dict().items():
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            t = t.transpose(1, 2)
        sd[checkpoint_name(name)] = t
    missing, unexpected = hf.load_state_dict(sd, strict=False, assign=True)
    if unexpected or missing:
        raise RuntimeError(f"twin mismatch: missing {missing}, unexpected {unexpected}")
    dev = engine.device
    hf.model.visual.rotary_pos_emb = getattr(m, vision_rope)(hcfg.vision_config).to(dev)
    hf.model.language_model.rotary_emb = getattr(m, text_rope)(hcfg.text_config).to(dev)
    return hf.eval()


def run_transformers(engine, folder: Path | None, n_tokens: int, replies: list[str],
                     warmup: int = 1, screen=(1920, 1080)):
    import torch
    from qwen_vl_utils import process_vision_info
    from transformers import AutoProcessor

    hf = transformers_twin(engine)
    processor = AutoProcessor.from_pretrained(str(folder or engine.name))
    dev = engine.device
    clock = engine._clock
    results = []
    for step in [0] * warmup + [1, 2]:
        msgs = warmup_messages() if step == 0 else messages_for(step, replies[0], screen)
        t0 = clock()
        images, _ = process_vision_info(msgs, image_patch_size=engine.processor.image.patch_size)
        text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=images, return_tensors="pt").to(dev)
        t1 = clock()
        with torch.inference_mode():
            vis = hf.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
            t2 = clock()
            out = hf(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                     mm_token_type_ids=inputs["mm_token_type_ids"],
                     image_grid_thw=inputs["image_grid_thw"], mm_encoder_outputs={"image": vis},
                     use_cache=True, logits_to_keep=1)
            t3 = clock()
            pkv, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range((n_tokens if step else 2) - 1):
                out = hf(input_ids=tok, past_key_values=pkv, use_cache=True)
                pkv, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            t4 = clock()
        if step:
            results.append({"timings": dict(zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3))),
                            "tokens": n_tokens,
                            "prompt_tokens": int(inputs["input_ids"].shape[1])})
    # transformers has no caches to turn off: its step 2 is both step-2 rows' comparison
    return [results[0], results[1], results[1]]


def _fresh(engine) -> None:
    """Forget cached conversation and images: every repetition starts cold, with a cache
    sized for it (not for the largest conversation so far)."""
    engine.reset(release_cache=True)
    engine._vision.clear()
    engine.processor._recent.clear()


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max of one figure over the repetitions."""
    v = sorted(values)
    n = len(v)
    median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return {"min": round(v[0], 4), "median": round(median, 4), "max": round(v[-1], 4)}


def summarize(runs: list[list[dict]]) -> list[dict]:
    """Per row, each phase's and each run's total (one run's own sum) over the runs."""
    rows = []
    for i, first in enumerate(runs[0]):
        per_run = [run[i]["timings"] for run in runs]
        figures = {ph: spread([t[ph] for t in per_run]) for ph in PHASES}
        figures["total"] = spread([sum(t.values()) for t in per_run])
        rows.append({**first, "figures": figures})
    return rows


# -- report --------------------------------------------------------------------------------


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=CONFIG_DIR, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(engine) -> str:
    import torch

    if engine.device.type == "cuda":
        return torch.cuda.get_device_name(engine.device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def report(args, argv, engine, ours, theirs) -> dict:
    import torch

    import kernels

    steps = []
    for i, o in enumerate(ours):
        phases = {}
        for ph in (*PHASES, "total"):
            a = o["figures"][ph]
            entry = {"ours_s": a["median"], "ours_min_s": a["min"], "ours_max_s": a["max"]}
            if theirs:
                b = theirs[i]["figures"][ph]
                entry.update(transformers_s=b["median"], transformers_min_s=b["min"],
                             transformers_max_s=b["max"])
                entry["speedup"] = round(b["median"] / a["median"], 2) if a["median"] else None
            phases[ph] = entry
        s = o["stats"]
        step, caches = ROWS[i]
        decode = o["figures"]["decode"]
        steps.append({"step": step, "caches": caches, "label": ROW_LABELS[ROWS[i]],
                      "prompt_tokens": s["prompt_tokens"],
                      "reused_tokens": s["reused_tokens"], "prefilled_tokens":
                      s["prefilled_tokens"], "images_encoded": s["images_encoded"],
                      "decode_tokens": o["tokens"],
                      "decode_tokens_per_s": round(o["tokens"] / decode["median"], 2),
                      "phases": phases})
    try:
        backend = kernels.backend() if hasattr(kernels, "backend") else "torch"
    except Exception as e:  # noqa: BLE001 - report, never fail the benchmark over it
        backend = f"unknown ({e})"
    return {
        "benchmark": "bench step",
        "command": "deskpilot bench step " + " ".join(argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "device": device_name(engine),
        "dtype": str(engine.model.lm_head.weight.dtype).replace("torch.", ""),
        "config": args.checkpoint or args.config,
        "weights": "checkpoint" if args.checkpoint else "random",
        "screenshot": f"{args.screen} synthetic",
        "repeat": args.repeat,
        "statistic": "each figure: median over the repeats (ours_s, transformers_s), with "
                     "min and max; total = one run's own sum of phases; speedup = ratio of "
                     "medians",
        "decode_mode": engine.decoder.mode,
        "load_average_1m": round(os.getloadavg()[0], 2),  # a shared machine skews timings
        "kernels_backend": str(backend),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "steps": steps,
    }


def print_table(res: dict) -> None:
    lines = [f"{res['config']} on {res['device']} ({res['dtype']})"]
    lines.append(f"median [min-max] of {res['repeat']} run(s); decode: {res['decode_mode']}")
    for s in res["steps"]:
        lines.append(f"{s['label']}: {s['prompt_tokens']} prompt tokens, "
                     f"{s['reused_tokens']} reused, {s['images_encoded']} image(s) encoded, "
                     f"{s['decode_tokens']} decoded ({s['decode_tokens_per_s']} tok/s)")
        for ph, e in s["phases"].items():
            row = (f"  {ph:<10} ours {e['ours_s']:8.3f}s [{e['ours_min_s']:.3f}-"
                   f"{e['ours_max_s']:.3f}]")
            if "transformers_s" in e:
                row += (f"   transformers {e['transformers_s']:8.3f}s "
                        f"[{e['transformers_min_s']:.3f}-{e['transformers_max_s']:.3f}]"
                        f"   x{e['speedup']}")
            lines.append(row)
    print("\n".join(lines))  # noqa: T201 - the command's output


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        screen = tuple(int(v) for v in args.screen.lower().split("x"))
    except ValueError:
        screen = ()
    if len(screen) != 2 or min(screen) < 32:
        print(f"--screen must look like 1920x1080 (sides >= 32), got {args.screen!r}",  # noqa: T201
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="deskpilot-bench-") as tmp:
        t = time.perf_counter()
        engine, folder = build_engine(args, Path(tmp))
        log.info("model ready in %.1fs", time.perf_counter() - t)
        for _ in range(args.warmup):
            engine.chat(warmup_messages(), max_new_tokens=2, ignore_end=True)
            engine.reset()
        if args.warmup:
            # once more at the capacity the steps need, so a compiled decode step has seen a
            # second cache size (dynamo then generalises it) before anything is timed
            engine.reserve(2 * len(engine.processor(messages_for(1, "", screen)).input_ids))
            engine.chat(warmup_messages(), max_new_tokens=2, ignore_end=True)
            engine.reset()
        # ours and transformers alternate, so a busy machine slows both alike
        our_runs, their_runs = [], []
        for i in range(args.repeat):
            _fresh(engine)
            our_runs.append(run_ours(engine, args.decode_tokens, screen))
            if args.compare == "transformers":
                _fresh(engine)
                their_runs.append(run_transformers(
                    engine, folder, args.decode_tokens, [our_runs[0][0]["reply"]],
                    args.warmup if i == 0 else 0, screen))
        ours = summarize(our_runs)
        theirs = summarize(their_runs) if their_runs else None
    res = report(args, argv, engine, ours, theirs)
    print_table(res)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
