"""Block-wise FP8 checkpoints (quant_method "fp8", DeepSeek-V3 / Qwen "-FP8" releases).

Format (what transformers' finegrained_fp8 integration and vLLM read):
- config.json `quantization_config`: {"quant_method": "fp8", "fmt": "e4m3",
  "weight_block_size": [128, 128], "activation_scheme": "dynamic" | "static",
  "modules_to_not_convert": [...]} (those modules are stored unquantized).
- Each quantized tensor NAME is float8_e4m3fn with a float32 companion NAME + "_scale_inv"
  holding one factor per block of its last two dims (`weight` -> `weight_scale_inv`
  (ceil(out/128), ceil(in/128)); a fused expert stack `gate_up_proj` (E, d1, d2) ->
  `gate_up_proj_scale_inv` (E, ceil(d1/128), ceil(d2/128))). The real value is
  fp8 * scale_inv of its block ("inv": the reciprocal of the quantization scale).
- activation_scheme "static" adds an `input_scale` per linear (not needed when dequantized).

Two ways to run it:
- dequantize on load (any device): fp8 * scale in fp32 -> the model dtype. The model is then
  exactly the bf16 model whose weights are the dequantized values (a CPU test checks it).
- on CUDA with compute capability >= 8.9 (Ada, Hopper), the text decoder's dense projections
  keep their FP8 weights (half the bytes) as `Fp8Linear`: activations are quantized per token
  and 128-column group (the "dynamic" scheme) and multiplied with `torch._scaled_mm` using
  per-block scales. A probe on load checks that this torch build's scaled matmul agrees with
  the dequantized product; if it does not (or is missing), the weights are dequantized instead
  and a warning says so. The fused MoE experts are always dequantized (our MoE kernel takes
  bf16).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

SCALE_SUFFIX = "_scale_inv"
FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn


class Fp8FormatError(ValueError):
    """A quantization_config or FP8 tensor that this loader cannot read, and why."""


@dataclass(frozen=True)
class Fp8Format:
    block: tuple[int, int]  # (rows, cols) of one scale block over a tensor's last two dims
    activation_scheme: str  # "dynamic" or "static"
    modules_to_not_convert: tuple[str, ...]


def read_format(folder: Path) -> Fp8Format | None:
    """The checkpoint's FP8 format from config.json, or None for an unquantized checkpoint."""
    f = folder / "config.json"
    if not f.exists():
        return None
    q = json.loads(f.read_text()).get("quantization_config")
    if not q:
        return None
    return parse_format(q)


def parse_format(q: dict) -> Fp8Format:
    method = q.get("quant_method")
    if method != "fp8":
        raise Fp8FormatError(f"quantization_config.quant_method {method!r} is not supported "
                             "(only block-wise 'fp8' checkpoints load)")
    fmt = q.get("fmt", "e4m3")
    if fmt != "e4m3":
        raise Fp8FormatError(f"quantization_config.fmt {fmt!r}: only e4m3 is supported")
    block = q.get("weight_block_size")
    if (not isinstance(block, list | tuple) or len(block) != 2
            or not all(isinstance(b, int) and b > 0 for b in block)):
        raise Fp8FormatError(f"quantization_config.weight_block_size {block!r}: expected two "
                             "positive ints like [128, 128] (per-tensor FP8 is not supported)")
    scheme = q.get("activation_scheme", "dynamic")
    if scheme not in ("dynamic", "static"):
        raise Fp8FormatError(f"quantization_config.activation_scheme {scheme!r}: expected "
                             "'dynamic' or 'static'")
    skip = tuple(q.get("modules_to_not_convert") or ())
    return Fp8Format((block[0], block[1]), scheme, skip)


def is_companion(name: str) -> bool:
    """Tensors that describe another tensor's quantization rather than a parameter."""
    return name.endswith(SCALE_SUFFIX) or name.endswith(".input_scale")


def block_scales_shape(shape: tuple[int, ...], block: tuple[int, int]) -> tuple[int, ...]:
    *lead, rows, cols = shape
    return (*lead, -(-rows // block[0]), -(-cols // block[1]))


def dequantize(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int],
               dtype: torch.dtype) -> torch.Tensor:
    """fp8 (..., R, C) * per-block scale_inv (..., ceil(R/br), ceil(C/bc)), in fp32 -> dtype."""
    want = block_scales_shape(tuple(weight.shape), block)
    if tuple(scale_inv.shape) != want:
        raise Fp8FormatError(f"scale_inv shape {list(scale_inv.shape)} does not match "
                             f"{list(want)} for a {list(weight.shape)} weight in "
                             f"{block[0]}x{block[1]} blocks")
    rows, cols = weight.shape[-2:]
    scale = scale_inv.float().repeat_interleave(block[0], -2)[..., :rows, :]
    scale = scale.repeat_interleave(block[1], -1)[..., :cols]
    return (weight.float() * scale).to(dtype)


def quantize(weight: torch.Tensor, block: tuple[int, int] = (128, 128)):
    """(fp8 weight, fp32 scale_inv) in the checkpoint format: each block scaled so its largest
    magnitude maps to FP8_MAX (the inverse of `dequantize`; used to build test checkpoints)."""
    rows, cols = weight.shape[-2:]
    br, bc = block
    pr, pc = -(-rows // br) * br, -(-cols // bc) * bc
    w = torch.nn.functional.pad(weight.float(), (0, pc - cols, 0, pr - rows))
    blocks = w.unflatten(-2, (pr // br, br)).unflatten(-1, (pc // bc, bc))  # (..., nr, br, nc, bc)
    amax = blocks.abs().amax(dim=(-3, -1)).clamp_min(1e-12)  # (..., nr, nc)
    scale_inv = amax / FP8_MAX
    q = (blocks / scale_inv[..., :, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    q = q.flatten(-4, -3).flatten(-2, -1)[..., :rows, :cols].contiguous()
    return q, scale_inv.contiguous()


def quantize_activations(x: torch.Tensor, group: int):
    """Dynamic per-token, per-`group`-column quantization: (fp8 x (T, K), fp32 scales
    (T, K / group)). K must be a multiple of group."""
    t, k = x.shape
    g = x.float().view(t, k // group, group)
    scale = g.abs().amax(-1).clamp_min(1e-12) / FP8_MAX  # (T, K/group)
    q = (g / scale[..., None]).clamp(-FP8_MAX, FP8_MAX).to(FP8).view(t, k)
    return q, scale


class Fp8Linear(nn.Module):
    """y = x @ dequant(W)^T + b with W kept in FP8: torch._scaled_mm on 1x128 activation
    blocks and block x block weight scales (CUDA, compute capability >= 8.9)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, block: tuple[int, int]):
        super().__init__()
        self.in_features, self.out_features, self.block = in_features, out_features, block
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8),
                                   requires_grad=False)
        self.weight_scale_inv = nn.Parameter(
            torch.empty(*block_scales_shape((out_features, in_features), block)),
            requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        xq, xs = quantize_activations(x2, self.block[1])
        # _scaled_mm wants the activation scales "outer-dim major" and B column-major (W^T of
        # a row-major W is exactly that)
        y = torch._scaled_mm(xq, self.weight.t(), scale_a=xs.t().contiguous().t(),
                             scale_b=self.weight_scale_inv.t(), out_dtype=x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*lead, self.out_features)


def scaled_mm_supported(device: torch.device, block: tuple[int, int]) -> bool:
    """True when this device and torch build run Fp8Linear's block-scaled matmul correctly
    (checked against the dequantized product on a small problem)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        return False
    if block[0] != block[1] or not hasattr(torch, "_scaled_mm"):
        return False
    try:
        g = torch.Generator(device=device).manual_seed(0)
        k, n = 2 * block[1], 2 * block[0]
        w = torch.randn(n, k, device=device, generator=g)
        lin = Fp8Linear(k, n, False, block).to(device)
        wq, ws = quantize(w, block)
        lin.weight.data, lin.weight_scale_inv.data = wq, ws
        x = torch.randn(16, k, device=device, dtype=torch.bfloat16, generator=g)
        got = lin(x).float()
        want = x.float() @ dequantize(wq, ws, block, torch.float32).t()
        err = (got - want).abs().max().item() / want.abs().max().item()
        if err > 0.1:  # activations in fp8 cost a few percent; a wrong scale layout is ~100%
            log.warning("torch._scaled_mm block scales disagree with the dequantized matmul "
                        "(relative error %.3f): dequantizing FP8 weights instead", err)
            return False
        return True
    except (RuntimeError, TypeError, ValueError) as exc:
        log.warning("torch._scaled_mm with block scales is unavailable here (%s): dequantizing "
                    "FP8 weights instead", exc)
        return False


def quantized_names(names) -> set[str]:
    """Checkpoint tensors stored in FP8: those with a `_scale_inv` companion."""
    names = set(names)
    return {n for n in names if n + SCALE_SUFFIX in names}


def _skipped(checkpoint_module: str, fmt: Fp8Format) -> bool:
    """modules_to_not_convert entries are checkpoint module names or single name components
    ("lm_head", "visual")."""
    parts = checkpoint_module.split(".")
    return any(checkpoint_module == m or checkpoint_module.startswith(m + ".") or m in parts
               for m in fmt.modules_to_not_convert)


def keep_fp8_linears(model: nn.Module, fmt: Fp8Format, quantized: set[str],
                     checkpoint_name, device: torch.device) -> set[str]:
    """On a meta-device `model`: replace the text decoder's nn.Linear modules whose checkpoint
    weight is FP8 (`quantized`: checkpoint tensor names) with Fp8Linear, when the device runs
    the scaled matmul. Returns the parameter names now loaded as FP8 weight + scale (empty:
    everything is dequantized)."""
    if fmt.activation_scheme != "dynamic" or not scaled_mm_supported(device, fmt.block):
        return set()
    kept: set[str] = set()
    for name, module in list(model.named_modules()):
        if not (isinstance(module, nn.Linear) and name.startswith("language_model.")):
            continue
        ck = checkpoint_name(f"{name}.weight")
        if ck not in quantized or _skipped(ck.removesuffix(".weight"), fmt):
            continue
        if module.in_features % fmt.block[1]:
            continue  # activation groups must tile the input
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        with torch.device("meta"):
            setattr(parent, child, Fp8Linear(module.in_features, module.out_features,
                                             module.bias is not None, fmt.block))
        kept |= {f"{name}.weight", f"{name}.weight{SCALE_SUFFIX}"}
    log.info("FP8: %d dense projections keep FP8 weights (torch._scaled_mm)", len(kept) // 2)
    return kept
