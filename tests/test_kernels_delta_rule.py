"""Gated delta rule and its conv: the references against the naive recurrence (float64), the
Triton kernels against the references in Triton's CPU interpreter (via a child pytest, odd
shapes, fp32/fp16/bf16 under the 2x tolerance rule), sm_90 compilation without a GPU, CUDA
sweeps at Qwen3.5-35B-A3B sizes, and the whole Qwen3.5 engine on the kernels."""

from __future__ import annotations

import os

import pytest
import torch

from kernels.delta_rule import (
    causal_conv1d_ref,
    causal_conv1d_update_ref,
    chunk_gated_delta_rule_ref,
    recurrent_gated_delta_rule_ref,
    recurrent_step_ref,
)
from kernels.testing import run_interpreter_pytest, within_rule

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
in_interpreter = pytest.mark.skipif(not INTERPRETER, reason="runs in the interpreter child")
in_parent = pytest.mark.skipif(INTERPRETER, reason="runs in the parent process")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _inputs(t, hk, hv, dk, dv, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(t, hk, dk, generator=g)
    k = torch.randn(t, hk, dk, generator=g)
    v = torch.randn(t, hv, dv, generator=g)
    decay = -torch.rand(t, hv, generator=g) * 0.3  # log space, <= 0
    beta = torch.rand(t, hv, generator=g)
    return [x.to(device=device, dtype=dtype) for x in (q, k, v, decay, beta)]


def naive_delta_rule(q, k, v, g, beta, s):
    """float64, one head at a time, the recurrence as written in the module docstring."""
    q, k, v, g, beta, s = (x.double() for x in (q, k, v, g, beta, s))
    r = v.shape[1] // q.shape[1]
    out = torch.zeros_like(v)
    s = s.clone()
    for h in range(v.shape[1]):
        for t in range(q.shape[0]):
            qt = q[t, h // r] / q[t, h // r].norm().clamp_min(1e-12) * q.shape[2] ** -0.5
            kt = k[t, h // r] / k[t, h // r].norm().clamp_min(1e-12)
            s[h] = s[h] * g[t, h].exp()
            s[h] = s[h] + torch.outer(kt, beta[t, h] * (v[t, h] - s[h].t() @ kt))
            out[t, h] = s[h].t() @ qt
    return out, s


@in_parent
@pytest.mark.parametrize("t", [1, 63, 64, 65, 130])
def test_chunked_and_recurrent_references_equal_the_naive_recurrence(t):
    q, k, v, g, beta = _inputs(t, 2, 4, 8, 12, seed=t)
    s0 = 0.1 * torch.randn(1, 4, 8, 12)
    want_o, want_s = naive_delta_rule(q, k, v, g, beta, s0[0])
    for fn in (chunk_gated_delta_rule_ref, recurrent_gated_delta_rule_ref):
        o, s = fn(q, k, v, g, beta, initial_state=s0, use_qk_l2norm=True)
        torch.testing.assert_close(o.double(), want_o, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(s[0].double(), want_s, atol=1e-5, rtol=1e-5)


@in_parent
def test_packed_sequences_equal_separate_calls():
    q, k, v, g, beta = _inputs(100, 1, 2, 8, 8)
    cu = torch.tensor([0, 30, 30, 100])  # an empty sequence in the middle
    s0 = torch.randn(3, 2, 8, 8)
    o, s = chunk_gated_delta_rule_ref(q, k, v, g, beta, initial_state=s0, cu_seqlens=cu)
    for n, (a, b) in enumerate([(0, 30), (30, 30), (30, 100)]):
        on, sn = chunk_gated_delta_rule_ref(q[a:b], k[a:b], v[a:b], g[a:b], beta[a:b],
                                            initial_state=s0[n:n + 1])
        torch.testing.assert_close(o[a:b], on)
        torch.testing.assert_close(s[n], sn[0])
    x, w = torch.randn(100, 6), torch.randn(6, 4)
    c0 = torch.randn(3, 6, 3)
    y, c = causal_conv1d_ref(x, w, initial_state=c0, cu_seqlens=cu)
    y2, c2 = causal_conv1d_ref(x[30:], w, initial_state=c0[2:])
    torch.testing.assert_close(y[30:], y2)
    torch.testing.assert_close(c[2], c2[0])
    torch.testing.assert_close(c[1], c0[1])  # an empty sequence keeps its state


@in_parent
def test_conv_update_continues_the_prefill_convolution():
    x, w = torch.randn(9, 5), torch.randn(5, 4)
    y, state = causal_conv1d_ref(x, w)
    y6, state6 = causal_conv1d_ref(x[:6], w)
    steps = [causal_conv1d_update_ref(x[i:i + 1], state6, w) for i in range(6, 9)]
    torch.testing.assert_close(torch.cat([y6, *steps]), y)
    torch.testing.assert_close(state6, state)


@in_parent
def test_references_reject_bad_shapes():
    q, k, v, g, beta = _inputs(5, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="multiple of q/k heads"):
        chunk_gated_delta_rule_ref(q, k, v, g, beta)
    q, k, v, g, beta = _inputs(5, 2, 4, 8, 8)
    with pytest.raises(ValueError, match="cu_seqlens"):
        chunk_gated_delta_rule_ref(q, k, v, g, beta, cu_seqlens=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="initial_state"):
        chunk_gated_delta_rule_ref(q, k, v, g, beta, initial_state=torch.zeros(1, 4, 8, 7))


@in_parent
def test_triton_kernels_in_interpreter():
    """Runs this file's interpreter tests in a child with TRITON_INTERPRET=1."""
    rc, output = run_interpreter_pytest(__file__)
    assert rc == 0, output[-6000:]
    assert " passed" in output, output[-2000:]
    assert "runs in the interpreter child" not in output, output[-2000:]  # none skipped


def _check_chunk(shape, cu, dtype, seed=0, device="cpu"):
    from kernels.delta_rule import chunk_gated_delta_rule

    t, hk, hv, dk, dv = shape
    x = _inputs(t, hk, hv, dk, dv, dtype, seed, device)
    n = 1 if cu is None else len(cu) - 1
    cu = None if cu is None else torch.tensor(cu, device=device)
    s0 = 0.1 * torch.randn(n, hv, dk, dv, generator=torch.Generator().manual_seed(seed))
    s0 = s0.to(device)
    kw = dict(initial_state=s0, cu_seqlens=cu, use_qk_l2norm=True)
    o, s = chunk_gated_delta_rule(*x, **kw)
    o32, s32 = chunk_gated_delta_rule_ref(*(a.float() for a in x), **kw)
    o_t, s_t = chunk_gated_delta_rule_ref(*x, **kw)
    ok, msg = within_rule(o, o32, o_t)
    assert ok, "output: " + msg
    ok, msg = within_rule(s.to(dtype), s32.to(dtype), s_t.to(dtype))
    assert ok, "state: " + msg


@in_interpreter
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "cu"), [
    ((1, 1, 1, 16, 16), None),  # a single token
    ((70, 1, 2, 8, 12), [0, 5, 5, 70]),  # odd dims, an empty sequence, a chunk boundary
])
def test_chunk_kernel_matches_reference(shape, cu, dtype):
    _check_chunk(shape, cu, dtype, seed=shape[0])


@in_interpreter
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_recurrent_step_kernel_matches_reference(dtype):
    from kernels.delta_rule import recurrent_step

    x = _inputs(3, 2, 4, 24, 40, dtype, seed=3)
    state = 0.1 * torch.randn(3, 4, 24, 40)
    ref_state32, ref_state_t = state.clone(), state.clone()
    o = recurrent_step(*x, state, use_qk_l2norm=True)
    o32 = recurrent_step_ref(*(a.float() for a in x), ref_state32, use_qk_l2norm=True)
    o_t = recurrent_step_ref(*x, ref_state_t, use_qk_l2norm=True)
    ok, msg = within_rule(o, o32, o_t)
    assert ok, msg
    ok, msg = within_rule(state, ref_state32, ref_state_t)
    assert ok, "state: " + msg


@in_interpreter
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("width", [2, 4])
def test_conv_update_kernel_matches_reference(dtype, width):
    from kernels.delta_rule import causal_conv1d_update

    g = torch.Generator().manual_seed(width)
    x = torch.randn(2, 37, generator=g).to(dtype)
    w = torch.randn(37, width, generator=g).to(dtype)
    state = torch.randn(2, 37, width - 1, generator=g)
    s32, s_t = state.clone(), state.clone()
    y = causal_conv1d_update(x, state, w)
    ok, msg = within_rule(y, causal_conv1d_update_ref(x.float(), s32, w.float()),
                          causal_conv1d_update_ref(x, s_t, w))
    assert ok, msg
    torch.testing.assert_close(state, s32)


@in_interpreter
def test_kernels_reject_bad_input():
    from kernels.delta_rule import causal_conv1d_update, chunk_gated_delta_rule, recurrent_step

    q, k, v, g, beta = _inputs(4, 2, 4, 8, 8)
    with pytest.raises(ValueError, match="g and beta"):
        chunk_gated_delta_rule(q, k, v, g[:, :2], beta)
    with pytest.raises(TypeError, match="fp16/bf16/fp32"):
        chunk_gated_delta_rule(q.double(), k, v, g, beta)
    with pytest.raises(ValueError, match="contiguous fp32"):
        recurrent_step(q, k, v, g, beta, torch.zeros(4, 4, 8, 8, dtype=torch.float16))
    with pytest.raises(ValueError, match="state"):
        causal_conv1d_update(torch.randn(2, 5), torch.zeros(2, 5, 2), torch.randn(5, 4))


@in_interpreter
def test_public_ops_dispatch_to_the_kernels():
    import kernels

    assert kernels.dispatch.choose("delta_rule", "cpu", torch.float32) == "triton"
    x = _inputs(5, 1, 2, 16, 16, torch.float16)
    o, _ = kernels.chunk_gated_delta_rule(*x, use_qk_l2norm=True)
    ok, msg = within_rule(o, chunk_gated_delta_rule_ref(*(a.float() for a in x),
                                                        use_qk_l2norm=True)[0],
                          chunk_gated_delta_rule_ref(*x, use_qk_l2norm=True)[0])
    assert ok, msg


@in_parent
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("shape", "cu"), [
    ((2000, 16, 32, 128, 128), None),  # Qwen3.5-35B-A3B's DeltaNet heads, a screenshot prefill
    ((333, 16, 32, 128, 128), [0, 1, 64, 200, 333]),  # packed training rows
])
def test_chunk_kernel_on_cuda(shape, cu, dtype):
    _check_chunk(shape, cu, dtype, device="cuda")


@in_parent
@pytest.mark.slow
def test_kernels_compile_for_h100():
    """Every delta-rule kernel compiles to sm_90 code at Qwen3.5-35B-A3B's head sizes (checked
    without a GPU; bf16 only: the chunk kernel's solve loop takes ptxas a minute or two)."""
    dt = "bf16"
    from kernels.delta_rule import _chunk_kernel, _conv_update_kernel, _recurrent_step_kernel
    from kernels.testing import compile_for_gpu

    sizes = {"Hk": "i32", "Hv": "i32", "Dk": "i32", "Dv": "i32", "scale": "fp32"}
    chunk_sig = {name: f"*{dt}" for name in ("Q", "K", "V", "G", "BETA", "O")}
    chunk_sig |= {"H0": "*fp32", "HT": "*fp32", "CU": "*i32", **sizes}
    compiled = compile_for_gpu(_chunk_kernel, chunk_sig, dict(BT=64, BK=128, BV=64,
                                                              HAS_H0=True, L2NORM=True,
                                                              INTERPRET=False),
                               num_warps=8, num_stages=1)
    assert "mma" in compiled.asm["ptx"] or "fma" in compiled.asm["ptx"]
    step_sig = {name: f"*{dt}" for name in ("Q", "K", "V", "G", "BETA", "O")}
    step_sig |= {"S_PTR": "*fp32", **sizes}
    compile_for_gpu(_recurrent_step_kernel, step_sig, dict(BK=128, BV=64, L2NORM=True,
                                                                   INTERPRET=False))
    conv_sig = {"X": f"*{dt}", "STATE": "*fp32", "W": f"*{dt}", "Y": f"*{dt}", "C": "i32"}
    compile_for_gpu(_conv_update_kernel, conv_sig, dict(KW=4, BC=1024, INTERPRET=False))


@in_parent
@pytest.mark.slow
def test_qwen35_engine_on_triton_kernels_matches_the_references():
    """The hybrid model end to end: DeltaNet layers through the chunk, step and conv kernels
    (interpreter) give the references' greedy tokens."""
    pytest.importorskip("triton")
    from tests.test_vlm_triton_path import run_engine
    from tests.tiny_checkpoints import tiny_qwen35_checkpoint

    path = tiny_qwen35_checkpoint("qwen3_5_moe")[0]
    reference = run_engine(path, "torch")
    triton = run_engine(path, "triton")
    assert reference["backend"] == "torch" and triton["backend"] == "triton"
    diff = max(abs(a - b) for a, b in zip(reference["logits"], triton["logits"], strict=True))
    assert diff < 1e-3, f"logits differ by {diff}"
    assert triton["ids"] == reference["ids"]
