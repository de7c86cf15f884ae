"""Memory plan for fine-tuning (and serving) a checkpoint: will it fit, and what to change.

One function, `plan_memory`, does the accounting for every caller — `deskpilot train plan`,
the trainer's pre-flight check and the app's model catalogue — so the numbers a person sees
before a run are the numbers the run is checked against.

The accounting is the mixed-precision one of the ZeRO paper (Rajbhandari et al. 2020, §3.1):
training a parameter with Adam in 16-bit with fp32 master copies costs 2 bytes (16-bit weight)
+ 2 (16-bit gradient) + 4 (fp32 master) + 4 + 4 (Adam's two moments) = 16 bytes. A 7B model
fully fine-tuned that way needs ≈ 112 GB before activations; GPT-2 1.5B needs 24 GB. In fp32
there is no separate master: 4 + 4 + 8 = 16 bytes as well. Frozen parameters (the base under
LoRA, a frozen vision tower) cost only their stored weight.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation"), per decoder
layer and token, counted from the layer's real shapes instead of the paper's 34·h (which
assumes a 4h dense MLP and stores dropout masks we do not have): the inputs of every matmul,
norm and activation that autograd saves, with FlashAttention-style attention (no T×T score
matrix). With per-layer checkpointing only each layer's input is kept, plus one layer's full
set while it is recomputed. The fp32 logits and their gradient are counted separately: at a
150k vocabulary they are often the single largest term.

Serving weights per format (`weight_formats`): bf16 is 2 bytes a parameter; fp8 is the
block-wise format vlm/fp8.py loads — the decoder's projections in e4m3 (1 byte) plus one fp32
scale per 128x128 block, everything else (embeddings, lm_head, norms, routers, the vision
tower) in bf16 — counted as vlm holds it on an sm_89+ GPU: dense projections stay FP8, the
MoE experts are dequantized to bf16 (the MoE kernel takes bf16). The checkpoint's own size
(experts in FP8 too) is reported beside it.

Parameters are counted exactly from the safetensors headers of a local checkpoint (names and
shapes, no tensor data read) or, for a hub id not downloaded yet, from its config.json.
Pure Python: no torch.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GIB = 1024**3
BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp8": 1}
# vlm/fp8.py's format (the official "-FP8" releases): e4m3 weights, one fp32 scale per block
FP8_BLOCK = (128, 128)
# Of the memory a GPU reports, what a run can plan to use: the CUDA context, the allocator's
# fragmentation and kernels' workspaces take the rest.
USABLE_FRACTION = 0.92
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "assets" / "configs"


class PlanError(ValueError):
    """The checkpoint cannot be planned (missing or unreadable config/weights)."""


# ---------------------------------------------------------------------------- parameters


@dataclass
class ParameterCount:
    """Parameters by part of the model; `lora_targets` are the (in, out) sizes of the
    linear layers LoRA adapts by default (attention projections, dense and shared MLPs)."""

    vision: int = 0
    text: int = 0  # everything of the decoder except routed experts, embeddings and lm_head
    experts: int = 0  # routed experts (frozen under LoRA unless asked)
    embeddings: int = 0  # token embedding + lm_head
    lora_targets: list[tuple[int, int]] = field(default_factory=list)
    # (how many, rows, cols) of the routed experts' weight matrices (FP8 scales per matrix)
    expert_matrices: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.vision + self.text + self.experts + self.embeddings

    def lora_parameters(self, rank: int) -> int:
        return sum(rank * (i + o) for i, o in self.lora_targets)


_LORA_TARGET_SUFFIXES = (
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
    "mlp.down_proj.weight", "shared_expert.gate_proj.weight", "shared_expert.up_proj.weight",
    "shared_expert.down_proj.weight", "linear_attn.in_proj_qkv.weight",
    "linear_attn.in_proj_z.weight", "linear_attn.out_proj.weight",
)


def _safetensors_shapes(folder: Path) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with open(file, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                if size > 100 * 1024 * 1024:
                    raise PlanError(f"{file}: header of {size} bytes — not a safetensors file")
                header = json.loads(f.read(size))
        except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PlanError(f"{file}: cannot read the safetensors header ({e})") from e
        for name, meta in header.items():
            if name != "__metadata__":
                shapes[name] = list(meta["shape"])
    return shapes


def count_from_shapes(shapes: dict[str, list[int]]) -> ParameterCount:
    count = ParameterCount()
    for name, shape in shapes.items():
        n = 1
        for s in shape:
            n *= s
        if name.endswith("weight_scale_inv") or name.endswith("weight_scale"):
            continue  # FP8 block scales: storage, not parameters
        if "visual" in name:
            count.vision += n
        elif "embed_tokens" in name or name.startswith("lm_head"):
            count.embeddings += n
        elif ".experts." in name or name.endswith(".experts.gate_up_proj") \
                or name.endswith(".experts.down_proj"):
            count.experts += n
            if len(shape) >= 2:  # one matrix, or a fused stack of them (E, rows, cols)
                count.expert_matrices.append((n // (shape[-2] * shape[-1]), *shape[-2:]))
        else:
            count.text += n
            if len(shape) == 2 and name.endswith(_LORA_TARGET_SUFFIXES):
                count.lora_targets.append((shape[1], shape[0]))
    return count


def count_from_config(config: dict[str, Any]) -> ParameterCount:
    """Analytic count from config.json (Qwen-VL families: attention, dense or MoE MLP with an
    optional shared expert, Gated DeltaNet layers, ViT with merger). Exact for the families
    we run up to biases and norms, which are counted too."""
    text = config.get("text_config") or config
    vision = config.get("vision_config") or {}
    h = int(text["hidden_size"])
    layers = int(text["num_hidden_layers"])
    heads = int(text["num_attention_heads"])
    kv = int(text.get("num_key_value_heads") or heads)
    hd = int(text.get("head_dim") or h // heads)
    vocab = int(text.get("vocab_size") or config.get("vocab_size"))
    experts = _num_experts(text)
    moe_i = int(text.get("moe_intermediate_size") or 0)
    dense_i = int(text.get("intermediate_size") or 0)
    shared_i = int(text.get("shared_expert_intermediate_size") or 0)
    qwen2 = "qwen2" in str(config.get("model_type", ""))  # q/k/v biases, no q/k norms
    mlp_only = set(text.get("mlp_only_layers") or [])
    sparse_step = int(text.get("decoder_sparse_step") or 1)
    layer_types = text.get("layer_types") or ["full_attention"] * layers
    gated_q = bool(text.get("attn_output_gate", False))
    count = ParameterCount()
    tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
    count.embeddings = vocab * h * (1 if tied else 2)
    for i in range(layers):
        count.text += 2 * h  # the two RMSNorm gains
        if layer_types[i] == "linear_attention":
            kh, vh = int(text["linear_num_key_heads"]), int(text["linear_num_value_heads"])
            kd, vd = int(text["linear_key_head_dim"]), int(text["linear_value_head_dim"])
            conv_dim = 2 * kh * kd + vh * vd
            parts = [(h, conv_dim), (h, vh * vd), (vh * vd, h)]  # in_proj_qkv, in_proj_z, out
            count.text += 2 * h * vh + conv_dim * int(text.get("linear_conv_kernel_dim", 4))
            count.text += 2 * vh + vd  # A_log, dt_bias, the gated norm's gain
        else:
            q_out = heads * hd * (2 if gated_q else 1)
            parts = [(h, q_out), (h, kv * hd), (h, kv * hd), (heads * hd, h)]
            count.text += (heads + 2 * kv) * hd if qwen2 else 2 * hd  # q/k/v bias or q/k norm
        for i_, o in parts:
            count.text += i_ * o
        count.lora_targets += parts
        moe = experts > 0 and i not in mlp_only and (i + 1) % sparse_step == 0
        if moe:
            count.text += h * experts  # router
            count.experts += experts * 3 * h * moe_i
            # the published files: each expert's gate, up (moe_i, h) and down (h, moe_i)
            count.expert_matrices += [(2 * experts, moe_i, h), (experts, h, moe_i)]
            if shared_i:
                shared = [(h, shared_i), (h, shared_i), (shared_i, h)]
                count.text += sum(a * b for a, b in shared) + h  # + the sigmoid gate
                count.lora_targets += shared
        else:
            dense = [(h, dense_i), (h, dense_i), (dense_i, h)]
            count.text += sum(a * b for a, b in dense)
            count.lora_targets += dense
    count.text += h  # final norm
    if vision:
        vh_, vd_ = int(vision["hidden_size"]), int(vision.get("depth") or vision.get("num_layers"))
        vi = int(vision["intermediate_size"])
        patch = int(vision.get("patch_size", 14))
        temporal = int(vision.get("temporal_patch_size", 2))
        merge = int(vision.get("spatial_merge_size", 2))
        out = int(vision.get("out_hidden_size") or h)
        merged = vh_ * merge * merge
        attention = 4 * vh_ * vh_ + 4 * vh_  # qkv and proj, with biases
        linear = merged * merged + merged + merged * out + out  # a merger's two Linears
        if qwen2:  # SwiGLU MLP with biases, RMSNorms, patch embedding without bias
            block = attention + 3 * vh_ * vi + 2 * vi + vh_ + 2 * vh_
            mergers = linear + vh_
            patch_embed = 3 * temporal * patch * patch * vh_
        else:  # GELU MLP with biases, LayerNorms; DeepStack mergers norm after the concat
            block = attention + 2 * vh_ * vi + vi + vh_ + 4 * vh_
            deepstack = len(vision.get("deepstack_visual_indexes") or [])
            mergers = linear + 2 * vh_ + deepstack * (linear + 2 * merged)
            patch_embed = 3 * temporal * patch * patch * vh_ + vh_
        count.vision = (vd_ * block + patch_embed + mergers
                        + int(vision.get("num_position_embeddings") or 0) * vh_)
    return count


def _num_experts(text: dict[str, Any]) -> int:
    # transformers 5.x writes num_local_experts where the published files say num_experts
    return int(text.get("num_experts") or text.get("num_local_experts") or 0)


def read_config(base: str | os.PathLike) -> tuple[dict[str, Any], Path | None]:
    """config.json of a checkpoint folder, a cached hub id, or a config under assets/configs
    (by name, e.g. `qwen3-vl-30b-a3b`); also the folder holding its weights, if local."""
    path = Path(base)
    if path.is_dir():
        file = path / "config.json"
        if not file.is_file():
            raise PlanError(f"{path}: no config.json — not a checkpoint folder")
        return _load_json(file), path
    if path.is_file() and path.suffix == ".json":
        return _load_json(path), None
    named = CONFIGS_DIR / f"{base}.json"
    if named.is_file():
        return _load_json(named), None
    if _looks_like_hub_id(str(base)):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(base), "config.json")
        if isinstance(cached, str):
            return _load_json(Path(cached)), Path(cached).parent
        raise PlanError(f"{base}: not downloaded (no config.json in the hub cache); "
                        f"`deskpilot models download {base}` first, or give a local folder")
    raise PlanError(f"{base}: not a checkpoint folder, config file, hub id or known config "
                    f"(known: {', '.join(sorted(p.stem for p in CONFIGS_DIR.glob('*.json')))})")


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _load_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"{file}: unreadable JSON ({e})") from e


def count_parameters(base: str | os.PathLike) -> tuple[ParameterCount, dict[str, Any]]:
    config, folder = read_config(base)
    shapes = _safetensors_shapes(folder) if folder is not None else {}
    count = count_from_shapes(shapes) if shapes else count_from_config(config)
    return count, config


# ---------------------------------------------------------------------------- the plan


@dataclass
class MemoryPlan:
    """Bytes of each part of a training (or serving) run; `fits` against `available`."""

    mode: str  # "full", "lora" or "inference"
    dtype: str
    parameters: int
    trainable: int
    weights: int
    gradients: int
    optimizer: int  # fp32 master copies + Adam moments
    activations: int  # with the chosen checkpointing setting
    activations_without_checkpointing: int
    activations_with_checkpointing: int
    logits: int
    kv_cache: int = 0
    available: int | None = None
    notes: list[str] = field(default_factory=list)
    # serving weights in each storage format (weight_formats); the plan's own is `dtype`
    weights_by_format: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return (self.weights + self.gradients + self.optimizer + self.activations
                + self.logits + self.kv_cache)

    @property
    def fits(self) -> bool | None:
        return None if self.available is None else self.total <= self.available

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(total=self.total, fits=self.fits, weights_format=self.dtype)
        return d


def _activation_bytes_per_token(config: dict[str, Any], act_bytes: int) -> tuple[int, int]:
    """(one decoder layer's saved activations per token, the layer input alone) in bytes."""
    text = config.get("text_config") or config
    h = int(text["hidden_size"])
    heads = int(text["num_attention_heads"])
    kv = int(text.get("num_key_value_heads") or heads)
    hd = int(text.get("head_dim") or h // heads)
    experts = _num_experts(text)
    topk = int(text.get("num_experts_per_tok") or 0)
    moe_i = int(text.get("moe_intermediate_size") or 0)
    dense_i = int(text.get("intermediate_size") or 0)
    shared_i = int(text.get("shared_expert_intermediate_size") or 0)
    # attention: norm in, q/k/v out, attention out (= o_proj in), residual; lse is negligible
    attention = h + h + (heads + 2 * kv) * hd + heads * hd
    # an MLP saves its input, gate and up outputs and the product fed to down_proj
    mlp = (h + 3 * topk * moe_i + experts + (3 * shared_i if shared_i else 0)
           if experts else h + 3 * dense_i)
    per_layer = (attention + mlp + h) * act_bytes
    return per_layer, h * act_bytes


def _fp8_matrix_bytes(rows: int, cols: int, block: tuple[int, int] = FP8_BLOCK) -> int:
    """One e4m3 (rows, cols) weight and its fp32 scales, one per block."""
    return rows * cols + 4 * -(-rows // block[0]) * -(-cols // block[1])


def weight_formats(count: ParameterCount) -> dict[str, int]:
    """Bytes of the weights for serving: "bf16"; "fp8" as vlm holds a block-wise FP8
    checkpoint on an sm_89+ GPU (dense decoder projections FP8 when their input width is a
    multiple of the block, as vlm/fp8.py requires of activation groups; experts dequantized
    to bf16); "fp8_checkpoint" the FP8 files themselves (experts FP8 as well)."""
    dense = sum(i * o for i, o in count.lora_targets)
    rest = count.total - dense - count.experts  # stays bf16 in every FP8 checkpoint
    dense_fp8 = sum(_fp8_matrix_bytes(o, i) if i % FP8_BLOCK[1] == 0 else 2 * i * o
                    for i, o in count.lora_targets)
    dense_file = sum(_fp8_matrix_bytes(o, i) for i, o in count.lora_targets)
    experts_file = sum(k * _fp8_matrix_bytes(r, c) for k, r, c in count.expert_matrices)
    if count.experts and not count.expert_matrices:  # shapes unknown: at least the e4m3 bytes
        experts_file = count.experts
    return {"bf16": 2 * count.total,
            "fp8": 2 * rest + dense_fp8 + 2 * count.experts,
            "fp8_checkpoint": 2 * rest + dense_file + experts_file}


def plan_memory(
    count: ParameterCount,
    config: dict[str, Any],
    *,
    mode: str,
    dtype: str = "bf16",
    lora_rank: int = 16,
    train_vision: bool = False,
    tokens: int = 4096,
    grad_checkpointing: bool = False,
    logit_tokens: int | None = None,
    available_bytes: int | None = None,
    world_size: int = 1,
) -> MemoryPlan:
    """Memory of one training step on `tokens` packed tokens (per device), or of serving.

    mode "full": every parameter trained except a frozen vision tower (unless
    `train_vision`); mode "lora": the base frozen in `dtype`, the adapter's parameters
    trained; mode "inference": weights + a KV cache for `tokens` tokens. `world_size` > 1
    shards parameters, gradients and optimizer states (FSDP / ZeRO-3). `logit_tokens`: the
    positions whose logits are computed (the trainer's loss computes them only at target
    tokens); default every token, the upper bound.
    """
    if mode not in ("full", "lora", "inference"):
        raise PlanError(f"mode must be full, lora or inference, not {mode!r}")
    if dtype not in BYTES:
        raise PlanError(f"dtype must be one of {', '.join(BYTES)}, not {dtype!r}")
    if dtype == "fp8" and mode != "inference":
        raise PlanError("fp8 is a storage format for serving; train in bf16, fp16 or fp32")
    w = BYTES[dtype]
    total = count.total
    notes: list[str] = []
    formats = weight_formats(count)
    if mode == "inference":
        text = config.get("text_config") or config
        heads = int(text["num_attention_heads"])
        kv_heads = int(text.get("num_key_value_heads") or heads)
        hd = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
        layer_types = text.get("layer_types") or ["full_attention"] * int(
            text["num_hidden_layers"])
        attn_layers = sum(1 for t in layer_types if t != "linear_attention")
        # an FP8 checkpoint computes in bf16 (vlm/fp8.py), so its cache is bf16 as well
        kv_bytes = 2 if dtype == "fp8" else min(w, 2)
        kv_cache = 2 * attn_layers * kv_heads * hd * tokens * kv_bytes
        weights = formats["fp8"] if dtype == "fp8" else total * w
        return MemoryPlan(mode, dtype, total, 0, weights, 0, 0, 0, 0, 0, 0,
                          kv_cache=kv_cache, available=available_bytes, notes=notes,
                          weights_by_format=formats)
    frozen_vision = 0 if train_vision else count.vision
    if mode == "full":
        trainable = total - frozen_vision
        weights = total * w
    else:
        trainable = count.lora_parameters(lora_rank)
        weights = total * w + trainable * w
    # 16-bit training keeps fp32 masters; fp32 training updates the weights themselves
    master = 4 if w < 4 else 0
    gradients = trainable * w
    optimizer = trainable * (master + 8)
    if world_size > 1:
        weights, gradients, optimizer = (x // world_size for x in (weights, gradients,
                                                                   optimizer))
    act = 2 if w < 4 else 4
    text = config.get("text_config") or config
    layers = int(text["num_hidden_layers"])
    per_layer, layer_input = _activation_bytes_per_token(config, act)
    without = tokens * per_layer * layers
    with_ckpt = tokens * (layer_input * layers + per_layer)
    vocab = int(text.get("vocab_size") or config.get("vocab_size"))
    logits = (tokens if logit_tokens is None else logit_tokens) * vocab * 4 * 2  # + grad
    activations = with_ckpt if grad_checkpointing else without
    return MemoryPlan(mode, dtype, total, trainable, weights, gradients, optimizer,
                      activations, without, with_ckpt, logits,
                      available=available_bytes, notes=notes, weights_by_format=formats)


def advice(plan: MemoryPlan) -> list[str]:
    """What to change when a plan does not fit, biggest saving first."""
    if plan.fits is not False:
        return []
    over = plan.total - (plan.available or 0)
    tips: list[tuple[int, str]] = []
    if plan.mode == "full":
        tips.append((plan.gradients + plan.optimizer, "use LoRA (--lora-rank 16) instead of "
                     "--full: no gradients or optimizer states for the frozen base"))
        tips.append(((plan.weights + plan.gradients + plan.optimizer) // 2,
                     "shard over 2+ GPUs: torchrun --nproc-per-node N -m train sft ... "
                     "(FSDP2 with --full)"))
    if plan.activations == plan.activations_without_checkpointing \
            and plan.activations_with_checkpointing < plan.activations:
        tips.append((plan.activations - plan.activations_with_checkpointing,
                     "add --grad-checkpointing"))
    if plan.activations + plan.logits > 0:
        tips.append(((plan.activations + plan.logits) // 2,
                     "halve --pack-tokens (activations and logits scale with it)"))
    if plan.dtype == "fp32":
        tips.append((plan.weights // 2, "train in --dtype bf16 (fp16 without bf16 support)"))
    tips.sort(key=lambda t: -t[0])
    return [f"{text} (saves ~{_gib_or_mib(saving)}; {_gib_or_mib(over)} over)"
            for saving, text in tips]


def _gib_or_mib(n: int) -> str:
    """GiB to one decimal, MiB below one GiB (a small model's savings would read 0.0 GiB)."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.1f} MiB"


def detect_available_memory() -> tuple[int | None, str]:
    """(bytes a run may plan to use, where that figure came from): the first CUDA GPU's
    memory, else None with a note (CPU memory is reported separately by the caller)."""
    try:
        import torch  # only when asked: the plan itself is pure Python
    except ImportError:
        return None, "torch is not installed, so no GPU could be detected"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return int(props.total_memory * USABLE_FRACTION), f"GPU 0: {props.name}"
    return None, "no CUDA GPU detected"


def system_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def format_plan(plan: MemoryPlan) -> str:
    def gib(x: int) -> str:
        return f"{x / GIB:8.2f} GiB"

    lines = [
        f"parameters      {plan.parameters / 1e9:8.3f} B   trainable {plan.trainable / 1e6:.2f} M"
        f" ({plan.mode}, {plan.dtype})",
        f"weights         {gib(plan.weights)}",
    ]
    if plan.mode != "inference":
        lines += [
            f"gradients       {gib(plan.gradients)}",
            f"optimizer       {gib(plan.optimizer)}   (fp32 masters + AdamW moments)",
            f"activations     {gib(plan.activations)}   (without checkpointing "
            f"{plan.activations_without_checkpointing / GIB:.2f} GiB, with "
            f"{plan.activations_with_checkpointing / GIB:.2f} GiB)",
            f"logits          {gib(plan.logits)}   (fp32 logits + gradient)",
        ]
    else:
        lines.append(f"kv cache        {gib(plan.kv_cache)}")
    lines.append(f"total           {gib(plan.total)}")
    lines += format_weight_formats(plan)
    if plan.available is None:
        lines.append("fits: unknown (no GPU memory given or detected; pass --gpu-memory GiB)")
    else:
        verdict = "yes" if plan.fits else "NO"
        lines.append(f"fits in {plan.available / GIB:.1f} GiB: {verdict}")
        lines += [f"  - {tip}" for tip in advice(plan)]
    lines += plan.notes
    return "\n".join(lines)


def format_weight_formats(plan: MemoryPlan) -> list[str]:
    """The serving weights in each format, and which one this plan counted."""
    formats = plan.weights_by_format
    if not formats:
        return []
    if plan.mode == "inference":
        used = f"this plan counts the weights in {plan.dtype}"
    else:
        used = (f"this plan counts the weights in {plan.dtype} (training; an FP8 checkpoint "
                "is dequantized to it)")
    return [
        "weights for inference, per format:",
        f"  bf16          {formats['bf16'] / GIB:8.2f} GiB",
        f"  fp8           {formats['fp8'] / GIB:8.2f} GiB   (e4m3 + an fp32 scale per "
        f"{FP8_BLOCK[0]}x{FP8_BLOCK[1]} block, as vlm holds it on sm_89+:",
        "                               MoE experts dequantized to bf16; the FP8 checkpoint "
        f"is {formats['fp8_checkpoint'] / GIB:.2f} GiB)",
        used,
    ]
