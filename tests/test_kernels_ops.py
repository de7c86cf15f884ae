"""The dispatched ops under torch.compile: registered as torch custom ops, a function calling
them compiles as one graph (no breaks) with the reference backend, gives the eager result, and
each op's schema and fake implementation pass torch.library.opcheck."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import dispatch


@pytest.fixture
def reference_backend(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "torch")
    kernels.reset_backend()
    yield
    monkeypatch.undo()
    dispatch._decision = None


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    seqs = [3, 9]
    cu = torch.tensor([0, 3, 12], dtype=torch.int32)
    return {
        "q": randn(sum(seqs), 4, 32), "k": randn(sum(seqs), 2, 32), "v": randn(sum(seqs), 2, 32),
        "cu": cu, "max_len": max(seqs),
        "dq": randn(2, 4, 32), "k_cache": randn(2, 2, 20, 32), "v_cache": randn(2, 2, 20, 32),
        "lens": torch.tensor([5, 20], dtype=torch.int32),
        "x": randn(5, 24), "logits": randn(5, 6), "w_gate_up": randn(6, 24, 16) / 5,
        "w_down": randn(6, 8, 24) / 3, "norm_w": randn(24),
    }


def _model_like(q, k, v, cu, max_len, dq, k_cache, v_cache, lens, x, logits, w_gate_up,
                w_down, norm_w):
    """One call of every dispatched op, the way the decoder chains them."""
    o = kernels.varlen_attention(q, k, v, cu, cu, max_len, max_len, causal=True)
    d = kernels.decode_attention(dq, k_cache, v_cache, lens)
    h, residual = kernels.rms_norm(x, norm_w, 1e-6, residual=x * 0.5)
    y = kernels.fused_moe(kernels.rms_norm(h, norm_w, 1e-6), logits, w_gate_up, w_down, 2)
    return o.sum() + d.sum(), y + residual


def test_dispatched_ops_compile_without_graph_breaks(reference_backend):
    inputs = _inputs()
    with torch.no_grad():
        want = _model_like(**inputs)
        explained = torch._dynamo.explain(_model_like)(**inputs)
        assert explained.graph_break_count == 0, explained.break_reasons
        assert explained.graph_count == 1
        code = explained.graphs[0].code
        for op in ("varlen_attention", "decode_attention", "fused_moe", "rms_norm_residual"):
            assert f"deskpilot.{op}" in code, code
        torch._dynamo.reset()
        compiled = torch.compile(_model_like, fullgraph=True, backend="aot_eager")
        got = compiled(**inputs)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_eager_calls_skip_the_custom_op_dispatcher(reference_backend):
    """Eager results are the implementations' own (the custom ops are for tracing only)."""
    from kernels.moe import fused_moe_ref

    i = _inputs()
    assert torch.equal(kernels.fused_moe(i["x"], i["logits"], i["w_gate_up"], i["w_down"], 2),
                       fused_moe_ref(i["x"], i["logits"], i["w_gate_up"], i["w_down"], 2))


def test_compiled_training_call_keeps_autograd(reference_backend):
    """A call autograd records bypasses the (forward-only) custom op and stays differentiable."""
    w = torch.ones(24, requires_grad=True)
    x = torch.randn(3, 24)
    compiled = torch.compile(lambda x, w: kernels.rms_norm(x, w, 1e-6).sum(), backend="eager",
                             fullgraph=True)
    compiled(x, w).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_op_schemas_pass_opcheck(reference_backend, dtype):
    i = _inputs(dtype)
    ops = torch.ops.deskpilot
    cases = [
        (ops.varlen_attention, (i["q"], i["k"], i["v"], i["cu"], i["cu"], i["max_len"],
                                i["max_len"], True, None)),
        (ops.decode_attention, (i["dq"], i["k_cache"], i["v_cache"], i["lens"], 0.2)),
        (ops.fused_moe, (i["x"], i["logits"], i["w_gate_up"], i["w_down"], 2, True)),
        (ops.rms_norm, (i["x"], i["norm_w"], 1e-6)),
        (ops.rms_norm_residual, (i["x"], i["norm_w"], 1e-6, i["x"] * 0.5)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)
