"""deskpilot-mini, the embedded default model: built from scratch and trained on the practice suite.

    run_mini(MiniOptions(out=DIR), open_env=...)  ->  DIR/model/  (a normal checkpoint)

    DIR/mini_args.json      every option (what --resume must match)
    DIR/base/               the randomly initialised checkpoint: config, tokenizer, weights
    DIR/stages/NAME/        each stage's train_log.jsonl and resumable checkpoint.pt
    DIR/stages/NAME/model/  the checkpoint after that stage (a finished stage is skipped on
                            --resume; the next one starts from it)
    DIR/model/              the final checkpoint (copy it to assets/models/deskpilot-mini/)
    DIR/curve.jsonl         held-out success after each stage: screens seen, minutes, rates

The model is a Qwen3-VL-MoE (native-resolution ViT with DeepStack, MLP merger, MoE decoder)
shaped small, built with transformers' own classes so transformers and vlm.load both load it,
with its own byte-level BPE (digits split one per token, so coordinates are read digit by
digit) trained on the prompts and replies it will see. It speaks the qwen3-vl dialect
(0..1000 relative points: the same reply whatever the screen size) with its own pixel
bounds, MAX_PIXELS: a 1280x800 screen becomes 960x576, where a 16-18 px practice label is
12-14 px tall and a label word spans 2-5 patches of 16 px.

Staged dense supervision, every stage through the packed trainer (train/loop.py):
  read    "read the screen": one reply listing every widget's kind, label and box, from
          the expert's dense labels (agent.tasks.dense_labels)
  single  single-step grounding: the expert's episodes on single-step tasks (the one action,
          then terminate on the next screenshot: a run succeeds only when the model ends it)
  multi   multi-step demonstrations: every step of the expert's episodes, with history
Difficulty rises within the suite's levels stage by stage (a curriculum: large labels and
few widgets first). DPO on checker-scored rollouts is not here: the train branch has no
DPO trainer yet.

Rendering needs Qt, which train/ never imports: the caller passes `open_env(task, size)`
(app/commands/train_mini.py passes app.offscreen_env.OffscreenTaskEnv) and, for the
evaluation, `open_screen(task, size)`. Training seeds start at TRAIN_SEED_BASE; the
evaluation uses seeds below it, which the model never saw.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from agent import actions as A
from agent.protocols import HistoryTurn
from agent.tasks import MULTI_SKILLS, SINGLE_SKILLS, dense_labels, generate, next_move
from agent.tasks.expert import to_model, with_screen

log = logging.getLogger(__name__)

DIALECT = "qwen3-vl"
FACTOR = 32  # patch 16, 2x2 merge
MIN_PIXELS = 4 * FACTOR * FACTOR
MAX_PIXELS = 960 * 608  # 1280x800 -> 960x576 (540 visual tokens); 1920x1080 -> 992x544
SCREEN_SIZES = ((1280, 800), (1920, 1080))
TRAIN_SEED_BASE = 1_000_000  # training tasks use seeds from here; evaluation seeds lie below
READ_TASK = "Read the screen: list every widget with its kind, label and box."
ARGS_FILE = "mini_args.json"
CURVE_FILE = "curve.jsonl"
MAX_EPISODE_STEPS = 8


class MiniError(RuntimeError):
    """A mini training run that cannot start: the message says why and what to do."""


# --- the model's shape ----------------------------------------------------------------------


@dataclass(frozen=True)
class MiniShape:
    """Sizes of the model. `mini` is the shipped one (about 5M parameters, ~21 MB in fp32);
    `tiny` is for the smoke test."""

    vision_depth: int = 4
    vision_hidden: int = 128
    vision_heads: int = 4
    vision_mlp: int = 256
    deepstack: tuple[int, ...] = (1, 2)  # ViT blocks whose features also feed the decoder
    position_side: int = 48  # learned position table side (interpolated to the grid)
    text_hidden: int = 192
    text_layers: int = 4
    text_heads: int = 4
    kv_heads: int = 2
    head_dim: int = 48
    mrope_section: tuple[int, int, int] = (8, 8, 8)  # sums to head_dim / 2
    experts: int = 4
    experts_per_token: int = 2
    expert_mlp: int = 192
    vocab_size: int = 2048
    max_pixels: int = MAX_PIXELS  # the screenshot's size at the model (preprocessor config)

    def config_dict(self, ids: dict[str, int]) -> dict:
        text = dict(
            vocab_size=self.vocab_size, hidden_size=self.text_hidden,
            num_hidden_layers=self.text_layers, num_attention_heads=self.text_heads,
            num_key_value_heads=self.kv_heads, head_dim=self.head_dim,
            intermediate_size=2 * self.expert_mlp, moe_intermediate_size=self.expert_mlp,
            num_experts=self.experts, num_experts_per_tok=self.experts_per_token,
            decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-6,
            max_position_embeddings=8192, tie_word_embeddings=False, initializer_range=0.02,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                             "mrope_section": list(self.mrope_section),
                             "mrope_interleaved": True},
        )
        vision = dict(
            depth=self.vision_depth, hidden_size=self.vision_hidden,
            intermediate_size=self.vision_mlp, num_heads=self.vision_heads, patch_size=16,
            temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=self.text_hidden,
            num_position_embeddings=self.position_side**2,
            deepstack_visual_indexes=list(self.deepstack), initializer_range=0.02,
        )
        return dict(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)


SHAPES = {
    "mini": MiniShape(),
    "tiny": MiniShape(vision_depth=2, vision_hidden=32, vision_heads=2, vision_mlp=64,
                      deepstack=(0,), position_side=16, text_hidden=48, text_layers=2,
                      text_heads=2, kv_heads=1, head_dim=24, mrope_section=(4, 4, 4),
                      experts=2, experts_per_token=1, expert_mlp=48, vocab_size=700,
                      max_pixels=384 * 256),  # small screenshots: a fast smoke test
}


# --- the recipe's options ---------------------------------------------------------------------


@dataclass
class StagePlan:
    name: str
    tasks: int  # practice tasks rendered for this stage
    steps: int  # optimizer steps
    lr: float
    difficulties: tuple[int, ...]  # the suite's levels drawn from, in turn


def default_stages(scale: float = 1.0) -> list[StagePlan]:
    """The shipped curriculum; `scale` multiplies data and steps (the smoke test uses a
    sliver)."""
    def n(x: int) -> int:
        return max(1, round(x * scale))

    return [StagePlan("read", n(96), n(60), 2e-3, (0, 1)),
            StagePlan("single", n(192), n(120), 1.5e-3, (0, 0, 1, 2)),
            StagePlan("multi", n(48), n(60), 1e-3, (0, 1, 2, 3))]


@dataclass
class MiniOptions:
    out: str
    shape: str = "mini"
    scale: float = 1.0  # data and steps of every stage
    stages: list[StagePlan] | None = None  # None: default_stages(scale)
    eval_seeds: list[int] = field(default_factory=lambda: list(range(20)))
    eval_screen: tuple[int, int] = (1280, 800)
    eval_max_steps: int = 6  # practice tasks take at most 6 steps
    eval_max_new_tokens: int = 96  # the expert's replies take 30-50 tokens
    pack_tokens: int = 4096
    accumulate: int = 1
    threads: int = 1  # torch threads: one keeps a shared machine usable
    seed: int = 0
    save_every: int = 25
    resume: bool = False
    device: str = "cpu"


def stage_plans(opts: MiniOptions) -> list[StagePlan]:
    return opts.stages if opts.stages is not None else default_stages(opts.scale)


# --- the base checkpoint: tokenizer, config, random weights -----------------------------------


def tokenizer_corpus(count: int = 400) -> list[str]:
    """What the tokenizer is trained on: the dialect's prompts, the suite's instructions,
    widget labels and reply shapes, so a prompt or reply takes few tokens."""
    from agent.dialects import get_dialect
    from agent.dialects.prompts import qwen3vl_system_prompt, qwen3vl_task

    dialect = get_dialect(DIALECT)
    # every prompt carries these: repeated so BPE merges them into few, long tokens
    corpus = [qwen3vl_system_prompt(), qwen3vl_task("x", "English"), READ_TASK] * 200
    for seed in range(TRAIN_SEED_BASE - count, TRAIN_SEED_BASE):
        task = generate(seed)
        corpus.append(task.instruction)
        corpus.append(" ".join(f'{w.kind} "{w.label}"' for w in task.layout.widgets))
    examples = [A.Click(A.Point(512, 384)), A.DoubleClick(A.Point(1, 999)),
                A.RightClick(A.Point(40, 60)), A.Hover(A.Point(700, 300)),
                A.Type("hello", enter=True), A.Scroll("down", A.Point(500, 500)),
                A.Finished("done")]
    for action in examples:
        try:
            corpus.append(dialect.format_reply("I see the window. I click the button.",
                                               [action]))
        except (TypeError, ValueError):
            continue
    return corpus


def build_tokenizer(folder: Path, vocab_size: int):
    """Byte-level BPE with the Qwen special tokens and chat template (vlm.synthetic's).
    Digits stay apart ('(512,384)' is read and written one digit at a time); words are not
    split first, so the fixed prompt text every sample carries merges into a few long tokens
    (the qwen3-vl system prompt: 3.9k characters -> 32 tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from vlm.synthetic import CHAT_TEMPLATE, PLAIN_ADDED_TOKENS, SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(PLAIN_ADDED_TOKENS),
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(tokenizer_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])
    fast.add_tokens(PLAIN_ADDED_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_base(folder: Path, shape: MiniShape, seed: int) -> Path:
    """A randomly initialised deskpilot-mini in `folder`, saved by transformers (experts
    rewritten to the published layout, as downloaded checkpoints have them)."""
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    from vlm.synthetic import special_ids, write_preprocessor_config

    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tok = build_tokenizer(tmp, shape.vocab_size)
    if len(tok) > shape.vocab_size:
        raise MiniError(f"the tokenizer has {len(tok)} tokens, more than the model's "
                        f"vocab_size {shape.vocab_size}")
    config = Qwen3VLMoeConfig(**shape.config_dict(special_ids(tok)))
    config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    config.pad_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(seed)
    model = Qwen3VLMoeForConditionalGeneration(config).float()
    model.save_pretrained(tmp)
    _to_published_layout(tmp)
    write_preprocessor_config(tmp, MIN_PIXELS, shape.max_pixels)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def _to_published_layout(folder: Path) -> None:
    """transformers 5 writes experts as (E, 2I, H)/(E, H, I); published checkpoints (and
    vlm.weights' default) hold (E, H, 2I)/(E, I, H)."""
    from safetensors.torch import load_file, save_file

    for f in sorted(folder.glob("*.safetensors")):
        tensors = load_file(f)
        for name, t in tensors.items():
            if name.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
                tensors[name] = t.transpose(1, 2).contiguous()
        save_file(tensors, f, metadata={"format": "pt"})


# --- data: the practice suite rendered, the expert's labels and moves -------------------------


def mini_dialect(max_pixels: int = MAX_PIXELS, history_n: int = 5):
    from agent.dialects import get_dialect

    return get_dialect(DIALECT, history_n=history_n, max_pixels=max_pixels)


def checkpoint_max_pixels(folder: Path) -> int:
    """The pixel bound a checkpoint's preprocessor_config.json gives its screenshots."""
    from vlm.processor import ImageSettings

    return ImageSettings.from_folder(Path(folder)).max_pixels


def model_view(observation, dialect):
    """(resized screenshot, frame with the model size) exactly as agent.loop makes them."""
    from PIL import Image

    size = tuple(dialect.model_size(*observation.image.size))
    image = observation.image
    if image.size != size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image, observation.frame.with_model(size, dialect.space)


def read_reply(labels: list[dict], image_size: tuple[int, int]) -> str:
    """The "read the screen" target: one line per widget, kind "label" (x1,y1,x2,y2), boxes
    in the dialect's 0..1000 space."""
    w, h = image_size
    lines = []
    for item in labels:
        x1, y1, x2, y2 = item["box"]
        box = (round(1000 * x1 / w), round(1000 * y1 / h), round(1000 * x2 / w),
               round(1000 * y2 / h))
        if box[2] <= 0 or box[3] <= 0 or box[0] >= 1000 or box[1] >= 1000:
            continue  # scrolled out of view
        lines.append(f'{item["kind"]} "{item["label"]}" ({",".join(map(str, box))})')
    return "\n".join(lines)


def screen_size_for(seed: int) -> tuple[int, int]:
    """Most training screens at 1280x800, one in four at 1920x1080."""
    return SCREEN_SIZES[1] if seed % 4 == 3 else SCREEN_SIZES[0]


def stage_messages(plan: StagePlan, stage_index: int, open_env: Callable, dialect,
                   base_seed: int) -> list[tuple[str, list[dict]]]:
    """(source, messages ending in the target reply) for every sample of a stage."""
    skills = MULTI_SKILLS if plan.name == "multi" else SINGLE_SKILLS
    out = []
    for i in range(plan.tasks):
        seed = TRAIN_SEED_BASE + base_seed + 100_000 * stage_index + i
        level = plan.difficulties[i % len(plan.difficulties)]
        task = generate(seed, difficulty=level, skill=skills[i % len(skills)])
        env = open_env(task, screen_size_for(seed))
        try:
            if plan.name == "read":
                out.append(read_sample(task, env, dialect))
            else:
                out += expert_episode(task, env, dialect)
        finally:
            env.close()
    return out


def read_sample(task, env, dialect) -> tuple[str, list[dict]]:
    from agent.dialects.history import image_part, message, text_part

    image, frame = model_view(env.observe(), dialect)
    labels = dense_labels(env.state(), (frame.monitor.left, frame.monitor.top))
    scaled = [{**item, "box": [v * image.size[i % 2] / frame.image_size[i % 2]
                               for i, v in enumerate(item["box"])]} for item in labels]
    messages = [{"role": "user", "content": [image_part(image), text_part(READ_TASK)]}]
    reply = read_reply(scaled, image.size)
    return f"read seed {task.seed}", [*messages, message("assistant", text_part(reply))]


def expert_episode(task, env, dialect) -> list[tuple[str, list[dict]]]:
    """The expert solving `task` on `env`, one sample per step: the messages the agent loop
    would send and the expert's reply in the dialect, until it finishes."""
    history: list[HistoryTurn] = []
    out = []
    for step in range(MAX_EPISODE_STEPS):
        image, frame = model_view(env.observe(), dialect)
        move = next_move(task, env.state(), step)
        reply = dialect.format_reply(move.thought, [to_model(frame, move.action)])
        messages = dialect.build_messages(task.instruction, history, image)
        out.append((f"seed {task.seed} step {step}",
                    [*messages, {"role": "assistant", "content": reply}]))
        if isinstance(move.action, A.Finished):
            break
        result = env.execute(with_screen(move.action))
        if not result.ok:
            raise MiniError(f"seed {task.seed}: the expert's {move.action.name} failed on "
                            f"the offscreen screen: {result.error}")
        history.append(HistoryTurn(image, reply))
    return out


# --- the recipe ----------------------------------------------------------------------------


def run_mini(opts: MiniOptions, *, open_env: Callable, open_screen: Callable | None = None,
             on_step: Callable[[dict], None] | None = None) -> dict:
    """Build (or resume) deskpilot-mini and train every stage; evaluate after each stage
    when `open_screen` is given. Returns a summary with the curve."""
    from train.data import ImageCache, tokenize
    from train.loop import LoopConfig, train
    from train.lora import setup_full
    from train.merged import save_merged
    from train.pack import pack
    from train.sft import load_base
    from vlm.processor import ImageSettings, Processor

    if opts.shape not in SHAPES:
        raise MiniError(f"--shape {opts.shape!r}: choose one of {', '.join(SHAPES)}")
    if opts.threads < 1:
        raise MiniError(f"--threads must be >= 1, got {opts.threads}")
    torch.set_num_threads(opts.threads)
    out = Path(opts.out).expanduser()
    plans = stage_plans(opts)
    args = json.loads(json.dumps(asdict(opts), default=list))
    _check_resume(out, args, opts.resume)
    out.mkdir(parents=True, exist_ok=True)
    (out / ARGS_FILE).write_text(json.dumps(args, indent=2), encoding="utf-8")
    if not opts.resume:
        (out / CURVE_FILE).unlink(missing_ok=True)

    device = torch.device(opts.device)
    base = out / "base"
    if not (opts.resume and (base / "config.json").is_file()):
        build_base(base, SHAPES[opts.shape], opts.seed)
    dialect = mini_dialect(SHAPES[opts.shape].max_pixels)
    screens, minutes_before = _progress_so_far(out)
    started = time.perf_counter() - 60 * minutes_before
    current = base
    summary: dict = {"out": str(out), "stages": []}
    for index, plan in enumerate(plans):
        stage_dir = out / "stages" / plan.name
        model_dir = stage_dir / "model"
        if opts.resume and (model_dir / "config.json").is_file():
            log.info("stage %s already trained: %s", plan.name, model_dir)
            current = model_dir
            continue
        t_data = time.perf_counter()
        folder, cfg, model = load_base(str(current), device, torch.float32)
        processor = Processor(folder, cfg.image_token_id, ImageSettings.for_model(cfg))
        images = ImageCache()
        samples = [tokenize(m, processor, images, src)
                   for src, m in stage_messages(plan, index, open_env, dialect, opts.seed)]
        rows = pack(samples, opts.pack_tokens, cfg.image_token_id,
                    cfg.vision.spatial_merge_size)
        data_s = time.perf_counter() - t_data
        setup_full(model, train_vision=True)
        loop_cfg = LoopConfig(steps=plan.steps, lr=plan.lr, warmup=max(1, plan.steps // 20),
                              accumulate=opts.accumulate, seed=opts.seed,
                              save_every=opts.save_every, weight_decay=0.01)
        resume_stage = opts.resume and (stage_dir / "checkpoint.pt").is_file()
        log.info("stage %s: %d samples in %d rows (%.0f s to render), %d steps", plan.name,
                 len(samples), len(rows), data_s, plan.steps)
        records = train(model, rows, loop_cfg, stage_dir, device=device, resume=resume_stage,
                        on_step=on_step, top_k=cfg.text.num_experts_per_tok)
        save_merged(model, folder, model_dir)
        # screens the model looked at: every image of every row it trained on this stage
        images_per_row = sum(len(r.grids) for r in rows) / max(1, len(rows))
        screens += round(images_per_row * plan.steps * opts.accumulate)
        current = model_dir
        point = {"stage": plan.name, "samples": len(samples), "rows": len(rows),
                 "steps": plan.steps, "screens_seen": screens,
                 "minutes": round((time.perf_counter() - started) / 60, 2),
                 "last_loss": records[-1]["loss"] if records else None}
        if open_screen is not None and opts.eval_seeds:
            point.update(evaluate(model_dir, opts.eval_seeds, open_screen, opts.eval_screen,
                                  out / "eval" / plan.name, opts.eval_max_steps,
                                  opts.eval_max_new_tokens))
        with open(out / CURVE_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(point) + "\n")
        summary["stages"].append(point)
        del model
    final = out / "model"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(current, final)
    summary["model"] = str(final)
    summary["curve"] = str(out / CURVE_FILE)
    return summary


def _progress_so_far(out: Path) -> tuple[int, float]:
    """(screens seen, minutes spent) by the stages a resumed run keeps, from its curve."""
    curve = out / CURVE_FILE
    if not curve.is_file():
        return 0, 0.0
    lines = [json.loads(x) for x in curve.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not lines:
        return 0, 0.0
    return int(lines[-1]["screens_seen"]), float(lines[-1]["minutes"])


def _check_resume(out: Path, args: dict, resume: bool) -> None:
    previous = out / ARGS_FILE
    if not resume:
        return
    if not previous.is_file():
        raise MiniError(f"--resume: {out} has no {ARGS_FILE}; nothing to resume")
    old = json.loads(previous.read_text(encoding="utf-8"))
    keys = ("shape", "scale", "stages", "pack_tokens", "accumulate", "seed")
    changed = [k for k in keys if old.get(k) != args.get(k)]
    if changed:
        raise MiniError(f"--resume: {', '.join(changed)} differ from {previous}; resume with "
                        "the same options (or train into a new --out)")


# --- evaluation on held-out seeds -----------------------------------------------------------


def evaluate(model_dir: Path, seeds: list[int], open_screen: Callable,
             screen_size: tuple[int, int], runs_dir: Path, max_steps: int = 6,
             max_new_tokens: int = 96) -> dict:
    """Task success of the checkpoint on `seeds` through the real agent loop (what
    `deskpilot eval tasks --policy local:DIR --env offscreen` runs), by task kind."""
    import vlm
    from agent.eval import evaluate_tasks
    from agent.safety import SafetyPolicy

    if any(s >= TRAIN_SEED_BASE for s in seeds):
        raise MiniError(f"evaluation seeds must be below {TRAIN_SEED_BASE} (training seeds)")
    engine = vlm.load(str(model_dir), device="cpu", dtype="fp32")
    dialect = mini_dialect(checkpoint_max_pixels(model_dir))
    t0 = time.perf_counter()
    summary, results = evaluate_tasks(
        seeds, open_screen=lambda task: open_screen(task, screen_size),
        make_policy=lambda task, screen, tracker: engine, dialect=dialect,
        runs_dir=runs_dir, model=str(model_dir), backend="local", max_steps=max_steps,
        safety=SafetyPolicy("off"), env_name="offscreen",
        chat_options={"max_new_tokens": max_new_tokens})
    rates = {}
    for kind in ("single", "multi"):
        picked = [r for r in results if r.kind == kind]
        rates[f"{kind}_success"] = (round(sum(r.success for r in picked) / len(picked), 4)
                                    if picked else None)
    steps = sum(r.steps for r in results)
    return {"eval_seeds": len(results), "success_rate": summary["success_rate"], **rates,
            "seconds_per_step": round((time.perf_counter() - t0) / max(1, steps), 3)}


def budget_note(points: list[dict]) -> str:
    """One line for the model card: screens per point and the success reached."""
    return "; ".join(f"{p['stage']}: {p['screens_seen']} screens, {p['minutes']} min, "
                     f"success {p.get('success_rate')}" for p in points)


__all__ = ["MAX_PIXELS", "SCREEN_SIZES", "SHAPES", "MiniError", "MiniOptions", "MiniShape",
           "StagePlan", "build_base", "default_stages", "evaluate", "run_mini", "math"]
