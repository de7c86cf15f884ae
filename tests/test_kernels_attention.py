"""Varlen attention: the reference against dense masked softmax, the Triton kernel against the
reference (in Triton's CPU interpreter, via a child pytest), and a CUDA sweep at real sizes."""

from __future__ import annotations

import os

import pytest
import torch

from kernels.attention import varlen_attention_ref
from kernels.testing import run_interpreter_pytest, within_rule

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
in_interpreter = pytest.mark.skipif(not INTERPRETER, reason="runs in the interpreter child")
in_parent = pytest.mark.skipif(INTERPRETER, reason="runs in the parent process")
ODD = [1, 7, 33, 100]  # packed sequence lengths


def naive_attention(q, k, v, seqs_q, seqs_k, causal, scale=None):
    """float64 dense softmax over an explicit (Lq, Lk) mask per sequence, heads repeated."""
    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    scale = d**-0.5 if scale is None else scale
    out, qs, ks = [], 0, 0
    for lq, lk in zip(seqs_q, seqs_k):
        qi = q[qs : qs + lq].double().transpose(0, 1)  # (Hq, Lq, D)
        ki = k[ks : ks + lk].double().transpose(0, 1).repeat_interleave(hq // hkv, 0)
        vi = v[ks : ks + lk].double().transpose(0, 1).repeat_interleave(hq // hkv, 0)
        scores = qi @ ki.transpose(1, 2) * scale  # (Hq, Lq, Lk)
        if causal:
            allowed = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
            scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, -1).nan_to_num(0.0)  # rows with no key -> 0
        out.append((probs @ vi).transpose(0, 1))
        qs, ks = qs + lq, ks + lk
    return torch.cat(out)


def make(seqs_q, seqs_k, hq, hkv, d, dtype, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(sum(seqs_q), hq, d, generator=g).to(device, dtype)
    k = torch.randn(sum(seqs_k), hkv, d, generator=g).to(device, dtype)
    v = torch.randn(sum(seqs_k), hkv, d, generator=g).to(device, dtype)

    def cu(seqs):
        return torch.tensor([0, *seqs], device=device).cumsum(0).to(torch.int32)

    return q, k, v, cu(seqs_q), cu(seqs_k), max(seqs_q), max(seqs_k)


CASES = [  # (seqs_q, seqs_k, Hq, Hkv, D, causal)
    (ODD, ODD, 2, 1, 72, False),
    (ODD, ODD, 2, 1, 80, True),
    ([5, 20], [30, 20], 4, 1, 64, True),  # prefill on a cached prefix: bottom-right causal
    ([30, 3], [20, 3], 2, 2, 128, True),  # more queries than keys: first rows see nothing
]


@in_parent
@pytest.mark.parametrize("case", CASES)
def test_reference_matches_dense_softmax(case):
    seqs_q, seqs_k, hq, hkv, d, causal = case
    q, k, v, cq, ck, mq, mk = make(seqs_q, seqs_k, hq, hkv, d, torch.float32)
    out = varlen_attention_ref(q, k, v, cq, ck, mq, mk, causal=causal)
    want = naive_attention(q, k, v, seqs_q, seqs_k, causal)
    torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-4)


@in_parent
@pytest.mark.parametrize("case", CASES)
def test_padded_reference_path_matches_dense_softmax(case):
    """The accelerator path (one padded, masked batch; no cu_seqlens read back) on CPU data."""
    from kernels.attention import _padded_attention

    seqs_q, seqs_k, hq, hkv, d, causal = case
    q, k, v, cq, ck, mq, mk = make(seqs_q, seqs_k, hq, hkv, d, torch.float32)
    out = _padded_attention(q, k, v, cq, ck, mq, mk, causal, d**-0.5, hq != hkv)
    want = naive_attention(q, k, v, seqs_q, seqs_k, causal)
    torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-4)


@in_parent
def test_padded_reference_path_has_finite_gradients():
    """Training runs the reference with autograd: padding and blind rows must not poison it."""
    from kernels.attention import _padded_attention

    q, k, v, cq, ck, mq, mk = make([30, 3], [20, 3], 2, 1, 16, torch.float32)
    for t in (q, k, v):
        t.requires_grad_(True)
    _padded_attention(q, k, v, cq, ck, mq, mk, True, 0.25, True).square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert q.grad[:10].abs().max() == 0  # rows that see no key take no gradient


@in_parent
@pytest.mark.parametrize("segments", [[9], [5, 20, 1]], ids=["one", "three"])
def test_reference_traces_without_host_reads(segments):
    """Under torch.compile the reference never reads cu_seqlens back to the host."""
    q, k, v, cq, ck, mq, mk = make(segments, segments, 4, 2, 32, torch.float32)
    explained = torch._dynamo.explain(varlen_attention_ref)(q, k, v, cq, ck, mq, mk,
                                                            causal=True)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@in_parent
def test_reference_honours_softmax_scale():
    q, k, v, cq, ck, mq, mk = make([9], [9], 2, 2, 64, torch.float32)
    out = varlen_attention_ref(q, k, v, cq, ck, mq, mk, softmax_scale=0.3)
    want = naive_attention(q, k, v, [9], [9], False, scale=0.3)
    torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-4)


@in_parent
def test_triton_kernel_in_interpreter():
    """Runs this file's interpreter tests in a child with TRITON_INTERPRET=1."""
    rc, output = run_interpreter_pytest(__file__)
    assert rc == 0, output[-6000:]
    assert " passed" in output, output[-2000:]
    assert "runs in the interpreter child" not in output, output[-2000:]  # none skipped


def _check(case, dtype, device="cpu", **kwargs):
    from kernels.attention import varlen_attention

    seqs_q, seqs_k, hq, hkv, d, causal = case
    q, k, v, cq, ck, mq, mk = make(seqs_q, seqs_k, hq, hkv, d, dtype, device=device)
    out = varlen_attention(q, k, v, cq, ck, mq, mk, causal=causal, **kwargs)
    ref32 = varlen_attention_ref(q.float(), k.float(), v.float(), cq, ck, mq, mk, causal=causal)
    same_dtype = varlen_attention_ref(q, k, v, cq, ck, mq, mk, causal=causal)
    ok, msg = within_rule(out, ref32, same_dtype)
    assert ok, msg
    return out


@in_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES[:2], ids=["d72-gqa", "d80-causal"])
def test_kernel_matches_reference_odd_lengths(case, dtype):
    _check(case, dtype)


@in_interpreter
@pytest.mark.parametrize("case", CASES[2:], ids=["prefix-causal", "empty-rows"])
def test_kernel_causal_alignment(case):
    out = _check(case, torch.float16)
    if case[0][0] > case[1][0]:  # rows 0..9 of the first sequence see no key at all
        assert out[:10].abs().max().item() == 0.0


@in_interpreter
def test_masked_head_dim_layout_agrees():
    """split_head_dim=False (pad 80 -> 128 with a mask) is the benchmark's comparison point."""
    _check(CASES[1], torch.float16, split_head_dim=False)


@in_interpreter
def test_kernel_rejects_bad_input():
    from kernels.attention import varlen_attention

    q, k, v, cq, ck, mq, mk = make([4], [4], 3, 2, 64, torch.float16)
    with pytest.raises(ValueError, match="not a multiple"):
        varlen_attention(q, k, v, cq, ck, mq, mk)
    q, k, v, cq, ck, mq, mk = make([4], [4], 2, 2, 64, torch.float16)
    with pytest.raises(ValueError, match="int32"):
        varlen_attention(q, k, v, cq.long(), ck, mq, mk)
    with pytest.raises(TypeError, match="fp16/bf16/fp32"):
        varlen_attention(q, k.float(), v, cq, ck, mq, mk)
    with pytest.raises(ValueError, match="contiguous head dim"):
        varlen_attention(q.transpose(0, 2).contiguous().transpose(0, 2), k, v, cq, ck, mq, mk)


@in_interpreter
def test_public_op_dispatches_to_the_kernel():
    import kernels

    assert kernels.backend("attention") == "triton"
    q, k, v, cq, ck, mq, mk = make([3, 17], [3, 17], 2, 1, 72, torch.float16)
    out = kernels.varlen_attention(q, k, v, cq, ck, mq, mk, causal=True)
    ref32 = varlen_attention_ref(q.float(), k.float(), v.float(), cq, ck, mq, mk, causal=True)
    ok, msg = within_rule(out, ref32, varlen_attention_ref(q, k, v, cq, ck, mq, mk, causal=True))
    assert ok, msg


GPU_CASES = [
    ([8160], [8160], 16, 16, 72, False),  # Qwen3-VL ViT, one 1080p screenshot
    ([64] * 40 + [5204], [64] * 40 + [5204], 16, 16, 80, False),  # Qwen2.5-VL windows + full
    ([2400], [5400], 32, 4, 128, True),  # causal prefill on a 3k prefix
    ([1, 7, 33, 100, 513], [1, 7, 33, 100, 513], 8, 2, 72, True),
]


@in_parent
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("case", GPU_CASES, ids=["vit72", "vit80-windows", "prefill128", "odd"])
@pytest.mark.parametrize("split", [True, False], ids=["split", "masked"])
def test_kernel_on_cuda(case, dtype, split):
    _check(case, dtype, device="cuda", split_head_dim=split)


def _attention_signature(dt: str) -> dict[str, str]:
    sig = {name: f"*{dt}" for name in "QKVO"}
    sig |= {"CU_Q": "*i32", "CU_K": "*i32", "GROUP": "i32", "qk_scale": "fp32"}
    strides = ["stride_qt", "stride_qh", "stride_kt", "stride_kh", "stride_vt", "stride_vh",
               "stride_ot", "stride_oh"]
    return sig | {name: "i32" for name in strides}


@in_parent
@pytest.mark.parametrize(
    "dt,d,causal,split",
    [("bf16", 72, False, True), ("fp16", 80, True, True), ("bf16", 80, False, False),
     ("fp16", 128, True, True), ("fp32", 72, True, True)],
)
def test_kernel_compiles_for_h100(dt, d, causal, split):
    """The launcher's GPU configs compile to sm_90 code (checked without a GPU)."""
    from kernels.attention import _launch_config, _varlen_attention_kernel, head_dim_blocks
    from kernels.testing import compile_for_gpu

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dt]
    cfg = _launch_config(d, torch_dtype, interpret=False)
    block_d, block_d2 = head_dim_blocks(d, split)
    constexprs = dict(HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
                      BLOCK_D=block_d, BLOCK_D2=max(block_d2, 16), HAS_D2=block_d2 > 0,
                      CAUSAL=causal, INTERPRET=False,
                      DOT_PRECISION="ieee" if dt == "fp32" else None)
    compiled = compile_for_gpu(_varlen_attention_kernel, _attention_signature(dt), constexprs,
                               num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if dt != "fp32":  # fp32 asks for exact ("ieee") dots, which are FMA loops by design
        assert "mma" in compiled.asm["ptx"]  # tensor-core dots
    assert compiled.metadata.shared <= 100 * 1024  # fits consumer GPUs too
