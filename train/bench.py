"""`deskpilot bench train`: training tokens/s packed vs padded, and gradient checkpointing's
memory, on a realistic mix of agent steps.

The model is an architecture from assets/configs/<config>.json with random weights and the
small synthetic tokenizer (vlm.bench / vlm.synthetic, as `bench step` builds it), set up as
`deskpilot train sft` sets it up (LoRA through peft on the decoder, or --full; the vision
tower frozen). The samples are steps of synthetic episodes in the checkpoint's dialect, 1-5
screenshots each (train/bench_mix.py).

Two ways through the same samples, each optimizer step the real training step of
`deskpilot train sft` (train.loop.one_step: forward, loss, backward, AdamW step):
- packed: train.pack.pack(samples, --pack-tokens) rows, one row per step (no padding);
- padded: the same samples in their order, batches of as many samples as a packed row holds
  on average, every sample padded to its batch's longest (train/pad.py: pad tokens computed,
  the attention mask a key-padding mask).
Both process the same real tokens; tokens/s counts only those (never pads), each figure the
min / median / max over --repeat passes, the two modes interleaved so a busy machine slows
both alike.

Memory: one packed step (the shortest row) with and without gradient checkpointing
(vlm.train_forward.set_gradient_checkpointing); activation memory = the step's peak minus
what was allocated before it (train/bench_memory.py says how each device measures it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

log = logging.getLogger(__name__)

CONFIGS = ("tiny", "small")
# packed must reach this many times padded's tokens/s, and checkpointing must keep at most
# this share of the activation memory without it (issue 12)
TARGET_SPEEDUP, TARGET_MEMORY_RATIO = 3.0, 0.40
LR = 1e-4  # the learning rate does not change the work of a step
# the benchmark's tokenizer: a byte-level BPE of this many tokens trained on general English
# prose (Python's own documentation text, pydoc_data, shipped with every CPython), so prompt
# text takes about as many tokens as with a real tokenizer instead of the ~1.5 characters
# per token of vlm.synthetic's 400-token one (measured on the qwen3-vl system prompt: 2.5
# characters per token with this one); it must stay below the tiny config's 4096 vocabulary
TOKENIZER_VOCAB = 4000


def mix_for(config: str):
    """The episodes' screens and max_pixels bounds for a config. small: the common desktop
    screens at 1M, 0.5M and 0.25M pixels (943, 480 and 240 image tokens for 1080p), the
    smaller bounds agents are run with; the dialects' default keeps 1080p at full size
    (2040 tokens), which would make one CPU pass take hours. tiny: small screens, so a
    test runs in seconds."""
    from train.bench_mix import Mix

    if config == "small":
        return Mix(screens=((1920, 1080), (1366, 768), (1280, 800), (2560, 1440)),
                   max_pixels=(1003520, 501760, 250880))
    return Mix(screens=((320, 200), (256, 160), (400, 240)),
               max_pixels=(64 * 32 * 32, 32 * 32 * 32, 16 * 32 * 32), episode_steps=(1, 6))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="deskpilot bench train", description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=CONFIGS, default="small",
                   help="architecture (assets/configs/NAME.json), random weights")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--json", dest="json_out", help="write the results here")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed passes per mode; report min/median/max (default: 3 on a GPU, "
                        "2 on the CPU, where one pass of the small config takes minutes)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps per mode first (default: 1 on a GPU, 0 on the CPU, "
                        "which has no compile or allocator warm-up worth a step)")
    p.add_argument("--steps", type=int, default=0,
                   help="timed optimizer steps per mode per pass (default 0: every packed "
                        "row, i.e. all samples)")
    p.add_argument("--samples", type=int, default=None,
                   help="agent steps in the mix (default: 64 on a GPU; on the CPU 6 for "
                        "small, 4 for tiny)")
    p.add_argument("--pack-tokens", type=int, default=None,
                   help="tokens per packed row (default: 16384 for small, as `train sft`; "
                        "4096 for tiny)")
    p.add_argument("--lora-rank", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    p.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                   help="auto: bf16 on a GPU, fp32 on the CPU (as `train sft`)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    gpu = args.device == "cuda" or (args.device == "auto" and _cuda_available())
    small = args.config == "small"
    if args.repeat is None:
        args.repeat = 3 if gpu else 2
    if args.warmup is None:
        args.warmup = 1 if gpu else 0
    if args.samples is None:
        args.samples = 64 if gpu else (6 if small else 4)
    args.pack_tokens = args.pack_tokens or (16384 if small else 4096)
    for name in ("repeat", "samples", "pack_tokens", "lora_rank"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.steps < 0 or args.warmup < 0:
        p.error("--steps and --warmup must be >= 0")
    return args


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# -- model and trainer ------------------------------------------------------------------------


def build(args, workdir: Path):
    """(model, cfg, processor, dialect name, device, dtype name): random weights of the
    config, set up for training as `train sft` does."""
    import torch

    from agent.dialects import dialect_for_checkpoint
    from train import lora as L
    from train.sft import DTYPES, resolve_device_dtype
    from vlm.bench import random_model, synthetic_folder
    from vlm.processor import ImageSettings, Processor
    from vlm.weights import read_config

    device, dtype_name = resolve_device_dtype(args.device, args.dtype)
    dtype = DTYPES[dtype_name]
    folder = synthetic_folder(args.config, workdir)
    prose_tokenizer(folder)
    cfg = read_config(folder)
    model = random_model(cfg, device, dtype, args.seed)
    torch.manual_seed(args.seed)
    if args.full:
        L.setup_full(model, train_vision=False)
    else:
        L.setup_lora(model, L.lora_config(args.lora_rank, 2.0 * args.lora_rank, 0.05, False,
                                          args.config))
    processor = Processor(folder, cfg.image_token_id, ImageSettings.for_model(cfg))
    dialect = dialect_for_checkpoint(json.loads((folder / "config.json").read_text()))
    return model, cfg, processor, dialect, device, dtype_name


def prose_tokenizer(folder: Path):
    """Replace the synthetic folder's tokenizer by one trained on general prose (see
    TOKENIZER_VOCAB); the config's special token ids stay valid (they come first)."""
    from pydoc_data.topics import topics

    from vlm.synthetic import CORPUS, build_tokenizer, special_ids

    tok = build_tokenizer(folder, TOKENIZER_VOCAB, [*CORPUS, *topics.values()])
    config = json.loads((folder / "config.json").read_text())
    if any(config[k] != v for k, v in special_ids(tok).items()):
        raise RuntimeError("the prose tokenizer's special token ids moved")
    return tok


class Trainer:
    """The state `train.loop.train` keeps around its steps (fp32 masters, AdamW, scaler),
    so a step here is train.loop.one_step itself."""

    def __init__(self, model, device, dtype_name: str, top_k: int, seed: int):
        import torch

        from train import distributed as D
        from train.loop import LoopConfig, MasterWeights, row_loss

        self.model, self.device, self.top_k = model, device, top_k
        self.cfg = LoopConfig(steps=1, lr=LR, dtype=dtype_name, seed=seed, save_every=0)
        self.stepper = D.Synced(model, row_loss, shard=False)
        self.masters = MasterWeights([p for p in model.parameters() if p.requires_grad])
        self.optimizer = torch.optim.AdamW(self.masters.masters, lr=LR,
                                           fused=(device.type == "cuda") or None)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype_name == "fp16")
        model.train()

    def step(self, row) -> dict:
        """One optimizer step on `row` (a packed row or a padded batch)."""
        from train.loop import one_step

        return one_step(self.stepper, [row], 0, self.cfg, self.masters, self.optimizer,
                        self.scaler, self.device, self.top_k)


# -- the two modes ----------------------------------------------------------------------------


def plan_modes(samples, args, cfg, pad_id: int) -> dict:
    """mode -> {"rows": rows to train on, one per step, "real": real tokens, "computed":
    tokens the model computes, "samples_per_step"}; both modes hold the same samples."""
    from train.pack import pack
    from train.pad import pad_batch, padded_batches

    merge = cfg.vision.spatial_merge_size
    packing = pack(samples, args.pack_tokens, cfg.image_token_id, merge)
    chosen = list(range(len(packing)))
    random.Random(args.seed).shuffle(chosen)  # the loop visits rows in a seeded order too
    if args.steps:
        chosen = chosen[:args.steps]
    packed_rows = [packing[i] for i in chosen]
    # the samples those rows hold, in the mix's (shuffled) order: the padded trainer's data
    used = sorted(j for i in chosen for j in packing.assignment[i])
    used_samples = [samples[j] for j in used]
    per_step = max(1, round(len(used_samples) / len(packed_rows)))
    batches = padded_batches(used_samples, per_step)
    padded_rows = [pad_batch(b, pad_id, cfg.image_token_id, merge) for b in batches]
    real = sum(len(s) for s in used_samples)
    return {
        "packed": {"rows": packed_rows, "real": real,
                   "computed": sum(r.num_tokens for r in packed_rows),
                   "samples_per_step": round(len(used_samples) / len(packed_rows), 2),
                   "samples": len(used_samples)},
        "padded": {"rows": padded_rows, "real": real,
                   "computed": sum(r.num_tokens for r in padded_rows),
                   "samples_per_step": per_step, "samples": len(used_samples)},
    }


def timed_pass(trainer, rows) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) for one optimizer step per row. The CPU
    seconds are what a shared machine's load disturbs least: a process that waits for a
    core accrues wall time, not CPU time."""
    import torch

    start, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        trainer.step(row.to(trainer.device))
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    return time.perf_counter() - start, time.process_time() - cpu


def measure_speed(model, modes: dict, args, device, dtype_name, top_k) -> dict:
    """mode -> (wall, CPU) seconds of each pass; the modes alternate pass by pass."""
    trainers = {m: Trainer(model, device, dtype_name, top_k, args.seed) for m in modes}
    # warm-up: first-call costs (allocator growth, lazy init) out of the timings
    for m, spec in modes.items():
        smallest = min(spec["rows"], key=lambda r: r.num_tokens)
        for _ in range(args.warmup):
            trainers[m].step(smallest.to(device))
    seconds: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for i in range(args.repeat):
        for m, spec in modes.items():
            seconds[m].append(timed_pass(trainers[m], spec["rows"]))
            log.info("pass %d/%d %s: %d steps in %.1fs (%.1f CPU s)", i + 1, args.repeat, m,
                     len(spec["rows"]), *seconds[m][-1])
    return seconds, trainers["packed"]


def measure_memory(model, row, trainer) -> dict:
    """One step on `row` without, then with gradient checkpointing, by a trainer that has
    stepped already (its optimizer state exists before the measured step, as in a run)."""
    from train.bench_memory import held_bytes, step_memory
    from vlm.train_forward import set_gradient_checkpointing

    out = {}
    device = trainer.device
    r = row.to(device)
    try:
        for label, enabled in (("without_checkpointing", False), ("with_checkpointing", True)):
            set_gradient_checkpointing(model, enabled)
            held = held_bytes(model, trainer.optimizer)
            out[label] = step_memory(lambda: trainer.step(r), device, held)
            log.info("memory %s: %s MiB activations", label, out[label]["activation_mib"])
    finally:
        set_gradient_checkpointing(model, False)
    return out


# -- report -----------------------------------------------------------------------------------


def report(args, argv, cfg, dtype_name, device, model, mix, samples, modes, seconds,
           memory, memory_row, dialect) -> dict:
    import torch

    from train.bench_mix import mix_stats
    from vlm.bench import _git_commit, device_name, spread

    results = {}
    for m, spec in modes.items():
        rates = [spec["real"] / wall for wall, _ in seconds[m]]
        cpu_rates = [spec["real"] / cpu for _, cpu in seconds[m]]
        results[m] = {
            "steps": len(spec["rows"]),
            "samples": spec["samples"],
            "samples_per_step": spec["samples_per_step"],
            "real_tokens": spec["real"],
            "computed_tokens": spec["computed"],
            "pad_tokens": spec["computed"] - spec["real"],
            "padded_token_fraction": round(1 - spec["real"] / spec["computed"], 4),
            "tokens_per_s": spread(rates),
            "seconds": spread([wall for wall, _ in seconds[m]]),
            "tokens_per_cpu_s": spread(cpu_rates),
            "cpu_seconds": spread([cpu for _, cpu in seconds[m]]),
        }

    def ratio_of_medians(key):
        return round(results["packed"][key]["median"] / results["padded"][key]["median"], 3)

    speedup = ratio_of_medians("tokens_per_s")
    without = memory["without_checkpointing"]["activation_mib"]
    ratio = round(memory["with_checkpointing"]["activation_mib"] / without, 4) if without \
        else None
    return {
        "benchmark": "bench train",
        "command": "deskpilot bench train " + " ".join(argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "device": device_name(SimpleNamespace(device=device)),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "load_average_1m": round(os.getloadavg()[0], 2),  # a shared machine skews timings
        "config": args.config,
        "architecture": cfg.raw["architectures"][0],
        "dtype": dtype_name,
        "weights": "random",
        "training": ("full fine-tuning" if args.full else
                     f"LoRA rank {args.lora_rank} (peft, train sft's default targets)")
                    + ", vision tower frozen",
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "pack_tokens": args.pack_tokens,
        "repeat": args.repeat,
        "warmup_steps": args.warmup,
        "seed": args.seed,
        "step": "train.loop.one_step (forward, summed loss, backward, AdamW), as train sft",
        "mix": {"dialect": dialect, **mix.describe(), **mix_stats(samples),
                "tokenizer": f"a {TOKENIZER_VOCAB}-token byte-level BPE trained on Python's "
                             "documentation prose (pydoc_data) with the Qwen special tokens "
                             "and chat template (vlm.synthetic); the model keeps the "
                             "architecture's vocabulary size. Text takes somewhat more "
                             "tokens than with Qwen's 151k-token tokenizer"},
        "padded_means": "each batch's samples right-padded with the pad token to the "
                        "batch's longest and run as one B x L stream through the same "
                        "forward: every pad computed in every layer, causal attention "
                        "within each L-token segment (the key-padding mask: no real token "
                        "sees a pad), pads labelled IGNORE; images are not padded",
        "tokens_per_s_counts": "real (non-pad) tokens of the pass / the pass's wall-clock "
                               "seconds; tokens_per_cpu_s: / this process's CPU seconds "
                               "(less disturbed by other processes on a shared machine)",
        "statistic": "min / median / max over the passes",
        "modes": results,
        "packed_over_padded": speedup,
        "packed_over_padded_cpu_time": ratio_of_medians("tokens_per_cpu_s"),
        "target_packed_over_padded": TARGET_SPEEDUP,
        "meets_speed_target": speedup >= TARGET_SPEEDUP,
        "memory": {
            "row": {"tokens": memory_row.num_tokens, "samples": len(memory_row.sources),
                    "images": len(memory_row.grids)},
            **memory,
            "checkpointing_activation_ratio": ratio,
            "target_ratio": TARGET_MEMORY_RATIO,
            "meets_memory_target": ratio is not None and ratio <= TARGET_MEMORY_RATIO,
        },
    }


def print_table(res: dict) -> None:
    lines = [f"bench train: {res['config']} ({res['architecture']}) on {res['device']}, "
             f"{res['dtype']}, {res['training']}",
             f"mix: {res['mix']['samples']} agent steps, screenshots per step "
             f"{res['mix']['screenshots_per_sample']}, {res['mix']['sample_tokens']['min']}-"
             f"{res['mix']['sample_tokens']['max']} tokens; median [min-max] of "
             f"{res['repeat']} pass(es)",
             f"{'mode':<8}{'steps':>6}{'samples/step':>14}{'real tokens':>13}{'pad %':>8}"
             f"{'tokens/s':>11}   [min-max]{'per CPU s':>12}"]
    for m, r in res["modes"].items():
        t = r["tokens_per_s"]
        lines.append(f"{m:<8}{r['steps']:>6}{r['samples_per_step']:>14}{r['real_tokens']:>13}"
                     f"{100 * r['padded_token_fraction']:>7.1f}%{t['median']:>11.1f}   "
                     f"[{t['min']:.1f}-{t['max']:.1f}]"
                     f"{r['tokens_per_cpu_s']['median']:>12.1f}")
    lines.append(f"packed / padded: {res['packed_over_padded']}x wall-clock, "
                 f"{res['packed_over_padded_cpu_time']}x per CPU second (target >= "
                 f"{res['target_packed_over_padded']}x)")
    mem = res["memory"]
    for label in ("without_checkpointing", "with_checkpointing"):
        e = mem[label]
        lines.append(f"{label.replace('_', ' ')}: peak {e['peak_mib']} MiB, before "
                     f"{e['before_mib']} MiB, activations {e['activation_mib']} MiB")
    lines.append(f"checkpointing keeps {mem['checkpointing_activation_ratio']} of the "
                 f"activation memory (target <= {mem['target_ratio']}); one step on a row "
                 f"of {mem['row']['tokens']} tokens")
    print("\n".join(lines))  # noqa: T201 - the command's output


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    from train.bench_mix import agent_step_samples
    from train.data import DataError
    from train.sft import TrainError

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="deskpilot-bench-train-") as tmp:
        try:
            model, cfg, processor, dialect, device, dtype_name = build(args, Path(tmp))
        except TrainError as exc:
            print(f"deskpilot bench train: {exc}", file=sys.stderr)  # noqa: T201
            return 2
        mix = mix_for(args.config)
        t = time.perf_counter()
        samples = agent_step_samples(args.samples, mix, dialect, processor, args.seed)
        log.info("%d samples built in %.1fs", len(samples), time.perf_counter() - t)
        pad_id = processor.tokenizer.pad_token_id
        try:
            modes = plan_modes(samples, args, cfg, pad_id)
        except DataError as exc:
            print(f"deskpilot bench train: {exc}", file=sys.stderr)  # noqa: T201
            return 2
        top_k = cfg.text.num_experts_per_tok
        seconds, trainer = measure_speed(model, modes, args, device, dtype_name, top_k)
        # the shortest packed row: its step is the cheapest to measure (twice, and on the
        # CPU under a dispatch mode that sees every op)
        memory_row = min(modes["packed"]["rows"], key=lambda r: r.num_tokens)
        memory = measure_memory(model, memory_row, trainer)
    res = report(args, argv, cfg, dtype_name, device, model, mix, samples, modes, seconds,
                 memory, memory_row, dialect)
    print_table(res)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
