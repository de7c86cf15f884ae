"""Which implementation runs each op: decided once per process, re-resolvable for tests.

Order (automatic): flash-attn's `flash_attn_varlen_func` for attention when it is installed
and applies (CUDA, fp16/bf16, head dim a multiple of 8 up to 256), flash-linear-attention's
gated delta rule likewise (CUDA, fp16/bf16) -> our Triton kernels on CUDA -> the
plain-PyTorch references. `DESKPILOT_KERNELS=torch|triton` forces one; forcing
`triton` with CPU tensors runs the kernels in Triton's interpreter (slow; meant for tests),
which needs TRITON_INTERPRET=1 set before Triton is first imported - this module does not set
it, because that would silently change every later Triton import in the process.

The process-wide part (environment, CUDA, installed packages) is resolved once and cached
in `_decision`; the per-call part (the tensors' device, dtype, head dim) is a cheap check in
`choose`, so a CPU model on a CUDA machine still gets the reference instead of a kernel that
cannot run on its data.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENV_VAR = "DESKPILOT_KERNELS"
OPS = ("attention", "decode_attention", "moe", "rms_norm", "delta_rule", "conv1d")
_FLOAT_DTYPES = ("torch.float16", "torch.bfloat16", "torch.float32")


@dataclass(frozen=True)
class Decision:
    """The process-wide choice: `base` is "triton" or "torch"; `forced` by the env var."""

    base: str
    forced: bool
    flash_attn: bool
    fla: bool = False  # flash-linear-attention's gated delta rule (has a backward)


_decision: Decision | None = None


def _flash_attn_importable() -> bool:
    if importlib.util.find_spec("flash_attn") is None:
        return False
    try:
        from flash_attn import flash_attn_varlen_func  # noqa: F401
    except Exception as exc:  # a broken build (ABI mismatch) must not take the model down
        log.warning("flash-attn is installed but unusable (%s); not using it", exc)
        return False
    return True


def _fla_importable() -> bool:
    if importlib.util.find_spec("fla") is None:
        return False
    try:
        from fla.ops.gated_delta_rule import (  # noqa: F401
            chunk_gated_delta_rule,
            fused_recurrent_gated_delta_rule,
        )
    except Exception as exc:  # same reasoning as flash-attn: a broken build is skipped
        log.warning("flash-linear-attention is installed but unusable (%s); not using it", exc)
        return False
    return True


def _resolve() -> Decision:
    requested = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if requested not in ("auto", "torch", "triton"):
        raise ValueError(f"{ENV_VAR}={requested!r}: expected 'torch', 'triton' or unset")
    if requested == "torch":
        return Decision("torch", forced=True, flash_attn=False)
    if requested == "triton":
        from kernels._triton import HAVE_TRITON

        if not HAVE_TRITON:
            raise RuntimeError(f"{ENV_VAR}=triton but Triton is not installed")
        return Decision("triton", forced=True, flash_attn=False)
    import torch

    if not torch.cuda.is_available():  # checked first: CPU-only runs never import Triton here
        return Decision("torch", forced=False, flash_attn=False)
    from kernels._triton import HAVE_TRITON

    return Decision(
        "triton" if HAVE_TRITON else "torch", forced=False, flash_attn=_flash_attn_importable(),
        fla=_fla_importable(),
    )


def decision() -> Decision:
    """The cached process-wide decision (resolved on first use)."""
    global _decision
    if _decision is None:
        _decision = _resolve()
        log.info("kernels backend: %s", _decision)
    return _decision


def reset() -> Decision:
    """Forget the cached decision and resolve again (tests change DESKPILOT_KERNELS)."""
    global _decision
    _decision = None
    return decision()


def wants_grad(*tensors) -> bool:
    """True when autograd would record this call (our Triton kernels have no backward)."""
    import torch

    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def choose(
    op: str, device, dtype, head_dim: int | None = None, *, grad: bool = False
) -> str:
    """"flash_attn", "fla", "triton" or "torch" for one call of `op` on data of this
    device/dtype.

    `grad`: the call must be differentiable, so only flash-attn (which has a backward) or the
    reference qualify.
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    d = decision()
    if d.base == "torch":
        return "torch"
    on_cuda = getattr(device, "type", device) == "cuda"
    if (
        op == "attention"
        and d.flash_attn
        and on_cuda
        and str(dtype) in _FLOAT_DTYPES[:2]
        and head_dim is not None
        and head_dim % 8 == 0
        and head_dim <= 256
    ):
        return "flash_attn"
    if op == "delta_rule" and d.fla and on_cuda and str(dtype) in _FLOAT_DTYPES[:2]:
        return "fla"
    if grad:
        return "torch"
    if not (on_cuda or d.forced):
        return "torch"  # auto-selected Triton, but this data lives on the CPU
    if str(dtype) not in _FLOAT_DTYPES:
        return "torch"
    if op in ("attention", "decode_attention") and (head_dim is None or head_dim > 256):
        return "torch"
    return "triton"


def backend(op: str = "attention") -> str:
    """What `op` uses for CUDA fp16 data with a supported head dim (for logs and tests)."""
    return choose(op, "cuda", "torch.float16", 128) if decision().base != "torch" else "torch"
