"""Fused MoE: routing and the reference against a loop over tokens and experts, the slot
alignment against its documented example, the Triton kernels against the reference (in
Triton's CPU interpreter, via a child pytest), and a CUDA sweep at the Qwen3-VL-MoE size."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from kernels.moe import align_slots, fused_moe_ref, route
from kernels.testing import run_interpreter_pytest, within_rule

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
in_interpreter = pytest.mark.skipif(not INTERPRETER, reason="runs in the interpreter child")
in_parent = pytest.mark.skipif(INTERPRETER, reason="runs in the parent process")


def naive_moe(x, logits, w_gate_up, w_down, top_k, renormalize=True):
    """float64, one token and one chosen expert at a time."""
    inter = w_down.shape[1]
    y = torch.zeros(x.shape, dtype=torch.float64)
    for t in range(x.shape[0]):
        probs = torch.softmax(logits[t].double(), -1)
        chosen = sorted(range(len(probs)), key=lambda e: -probs[e].item())[:top_k]
        total = sum(probs[e] for e in chosen) if renormalize else 1.0
        for e in chosen:
            gu = x[t].double() @ w_gate_up[e].double()
            act = F.silu(gu[:inter]) * gu[inter:]
            y[t] += probs[e] / total * (act @ w_down[e].double())
    return y


def make(t, e=8, h=48, inter=40, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, h, generator=g)
    logits = torch.randn(t, e, generator=g) * 2
    w_gate_up = torch.randn(e, h, 2 * inter, generator=g) / h**0.5
    w_down = torch.randn(e, inter, h, generator=g) / inter**0.5
    return (a.to(device, dtype) for a in (x, logits, w_gate_up, w_down))


@in_parent
@pytest.mark.parametrize("renormalize", [True, False])
@pytest.mark.parametrize("t", [1, 5, 37])
def test_reference_matches_token_loop(t, renormalize):
    x, logits, wgu, wd = make(t)
    out = fused_moe_ref(x, logits, wgu, wd, 3, renormalize=renormalize)
    want = naive_moe(x, logits, wgu, wd, 3, renormalize)
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-4)


@in_parent
@pytest.mark.parametrize("t", [1, 5, 37])
def test_device_side_reference_paths_match_the_token_loop(t):
    """The accelerator formulations (gathered weights, grouped GEMM, dense) on CPU tensors."""
    from kernels.moe import _moe_dense, _moe_gathered, _moe_grouped

    x, logits, wgu, wd = make(t)
    weights, ids = route(logits, 3)
    want = naive_moe(x, logits, wgu, wd, 3)
    for path in (_moe_gathered, _moe_dense):
        out = path(x, weights, ids, wgu, wd)
        torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-4)
    bf16 = [a.bfloat16() for a in (x, wgu, wd)]  # torch._grouped_mm takes bf16 only
    out = _moe_grouped(bf16[0], weights, ids, *bf16[1:])
    ok, msg = within_rule(out, want.float(), _moe_host_loop_bf16(bf16, weights, ids))
    assert ok, msg


@in_parent
def test_reference_survives_a_grouped_mm_that_refuses(monkeypatch):
    """Where torch._grouped_mm rejects the weights (arch, layout), the device-side reference
    warns once and computes every expert densely instead of failing."""
    import kernels.moe as moe

    def refuse(*args, **kwargs):
        raise RuntimeError("grouped gemm is not supported on this device")

    x, logits, wgu, wd = make(37, dtype=torch.bfloat16)
    monkeypatch.setattr(torch, "_grouped_mm", refuse)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the device-side path
    monkeypatch.setattr(moe, "_grouped_mm_failed", False)
    out = moe.fused_moe_ref(x, logits, wgu, wd, 3)
    assert moe._grouped_mm_failed
    monkeypatch.undo()
    want = naive_moe(x, logits, wgu, wd, 3)
    ok, msg = within_rule(out, want.float(), fused_moe_ref(x, logits, wgu, wd, 3))
    assert ok, msg


def _moe_host_loop_bf16(bf16, weights, ids):
    from kernels.moe import _moe_host_loop

    return _moe_host_loop(bf16[0], weights, ids, *bf16[1:])


@in_parent
@pytest.mark.parametrize("t,dtype", [(1, torch.float32), (37, torch.float32),
                                     (37, torch.bfloat16)])
def test_reference_traces_without_host_reads(t, dtype):
    """Under torch.compile the reference never reads expert ids back to the host: dynamo
    traces it as one graph (a .tolist()/.item() would be a graph break)."""
    x, logits, wgu, wd = make(t, dtype=dtype)
    explained = torch._dynamo.explain(fused_moe_ref)(x, logits, wgu, wd, 3)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@in_parent
def test_route_softmax_topk_renormalise():
    logits = torch.tensor([[0.0, 2.0, 1.0, -1.0]], dtype=torch.bfloat16)
    weights, ids = route(logits, 2)
    assert ids.tolist() == [[1, 2]] and weights.dtype == torch.float32
    e1, e2 = torch.exp(torch.tensor(2.0)), torch.exp(torch.tensor(1.0))
    torch.testing.assert_close(weights, torch.stack([e1, e2])[None] / (e1 + e2))
    raw, _ = route(logits, 2, renormalize=False)
    assert raw.sum().item() < 1.0


@in_parent
def test_align_slots_worked_example():
    """The example in kernels/moe.py's docstring, value for value."""
    slots, block_expert = align_slots(torch.tensor([[2, 0], [0, 3], [2, 0]]), 4, 4)
    assert slots[:12].tolist() == [1, 2, 5, 6, 0, 4, 6, 6, 3, 6, 6, 6]
    assert set(slots[12:].tolist()) <= {6}
    assert block_expert[:3].tolist() == [0, 2, 3] and set(block_expert[3:].tolist()) == {-1}


@in_parent
@pytest.mark.parametrize("t,e,k,block", [(1, 8, 3, 16), (37, 8, 3, 16), (300, 128, 8, 64)])
def test_align_slots_covers_every_slot_once(t, e, k, block):
    ids = torch.stack([torch.randperm(e)[:k] for _ in range(t)])
    slots, block_expert = align_slots(ids, e, block)
    valid = slots[slots < t * k]
    assert sorted(valid.tolist()) == list(range(t * k))
    for b, expert in enumerate(block_expert.tolist()):
        rows = slots[b * block : (b + 1) * block]
        rows = rows[rows < t * k]
        if expert < 0:
            assert rows.numel() == 0
        else:
            assert (ids.reshape(-1)[rows] == expert).all()


@in_parent
def test_launch_configs_are_complete():
    from kernels.moe import CONFIG_DIR

    files = sorted(CONFIG_DIR.glob("moe_*.json"))
    assert any(f.name == "moe_default.json" for f in files)
    for f in files:
        table = {k: v for k, v in json.loads(f.read_text()).items() if not k.startswith("_")}
        assert table, f
        for key, cfg in table.items():
            assert int(key) >= 1
            assert set(cfg) == {"BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages"}, f
            assert cfg["BLOCK_M"] >= 16 and cfg["BLOCK_K"] >= 16, f


@in_parent
def test_triton_kernels_in_interpreter():
    """Runs this file's interpreter tests in a child with TRITON_INTERPRET=1."""
    rc, output = run_interpreter_pytest(__file__)
    assert rc == 0, output[-6000:]
    assert " passed" in output, output[-2000:]
    assert "runs in the interpreter child" not in output, output[-2000:]  # none skipped


def _check(t, dtype, device="cpu", **shape):
    from kernels.moe import fused_moe

    top_k = shape.pop("top_k", 3)
    x, logits, wgu, wd = make(t, dtype=dtype, device=device, **shape)
    out = fused_moe(x, logits, wgu, wd, top_k)
    ref32 = fused_moe_ref(x.float(), logits.float(), wgu.float(), wd.float(), top_k)
    ok, msg = within_rule(out, ref32, fused_moe_ref(x, logits, wgu, wd, top_k))
    assert ok, msg


@in_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("t", [1, 5, 37], ids=["decode1", "decode5", "prefill37"])
def test_kernels_match_reference(t, dtype):
    _check(t, dtype)


@in_interpreter
def test_decode_and_sorted_paths_agree_at_the_boundary():
    """T = 16 takes the decode path, T = 17 the sorted one; both against the reference."""
    from kernels.moe import DECODE_MAX_TOKENS

    _check(DECODE_MAX_TOKENS, torch.float16, e=4, top_k=2)
    _check(DECODE_MAX_TOKENS + 1, torch.float16, e=4, top_k=2)


@in_interpreter
def test_kernel_rejects_bad_input():
    from kernels.moe import fused_moe

    x, logits, wgu, wd = make(3)
    with pytest.raises(ValueError, match="shape mismatch"):
        fused_moe(x, logits[:, :7], wgu, wd, 2)
    with pytest.raises(ValueError, match="top_k"):
        fused_moe(x, logits, wgu, wd, 9)
    with pytest.raises(TypeError, match="fp16/bf16/fp32"):
        fused_moe(x.half(), logits, wgu, wd, 2)


@in_interpreter
def test_public_op_dispatches_to_the_kernel():
    import kernels

    assert kernels.backend("moe") == "triton"
    x, logits, wgu, wd = make(6, dtype=torch.bfloat16)
    ref32 = fused_moe_ref(x.float(), logits.float(), wgu.float(), wd.float(), 3)
    out = kernels.fused_moe(x, logits, wgu, wd, 3)
    ok, msg = within_rule(out, ref32, fused_moe_ref(x, logits, wgu, wd, 3))
    assert ok, msg


@in_parent
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("t", [1, 8, 16, 17, 2400])
def test_kernels_on_cuda_qwen3_moe_size(t, dtype):
    _check(t, dtype, device="cuda", e=128, h=2048, inter=768, top_k=8)


def _moe_signatures(dt: str) -> tuple[dict[str, str], dict[str, str]]:
    ints = {"T": "i32", "H": "i32", "I": "i32", "top_k": "i32"}
    gate_up = {"X": f"*{dt}", "W": f"*{dt}", "ACT": f"*{dt}", "SORTED_SLOTS": "*i32",
               "BLOCK_EXPERT": "*i32", "IDS": "*i32", **ints}
    gate_up |= {n: "i32" for n in ("stride_xt", "stride_we", "stride_wh", "stride_wn",
                                   "stride_at")}
    down = {"ACT": f"*{dt}", "W": f"*{dt}", "OUT": f"*{dt}", "SORTED_SLOTS": "*i32",
            "BLOCK_EXPERT": "*i32", "IDS": "*i32", "ROUTE_W": "*fp32",
            "T": "i32", "I": "i32", "H": "i32", "top_k": "i32"}
    down |= {n: "i32" for n in ("stride_at", "stride_we", "stride_wi", "stride_wn",
                                "stride_ot")}
    return gate_up, down


@in_parent
@pytest.mark.parametrize("dt,tokens", [("bf16", 1), ("bf16", 2400), ("fp16", 64), ("fp32", 300)])
def test_kernels_compile_for_h100(dt, tokens):
    """The default launch configs compile to sm_90 code (checked without a GPU)."""
    from kernels.moe import (
        DECODE_MAX_TOKENS,
        _moe_down_kernel,
        _moe_gate_up_kernel,
        config_table,
    )
    from kernels.testing import compile_for_gpu

    table = config_table(128, 768, "no-such-device")  # the default table
    cfg = table[min(table, key=lambda key: abs(key - tokens))]
    constexprs = dict(BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
                      DECODE=tokens <= DECODE_MAX_TOKENS, SLOTS_PAD=8, K_PAD=8, INTERPRET=False,
                      DOT_PRECISION="ieee" if dt == "fp32" else None)
    for kernel, signature in zip((_moe_gate_up_kernel, _moe_down_kernel), _moe_signatures(dt)):
        compiled = compile_for_gpu(kernel, signature, constexprs, num_warps=cfg["num_warps"],
                                   num_stages=cfg["num_stages"])
        if dt != "fp32":  # fp32 asks for exact ("ieee") dots, FMA loops by design
            assert "mma" in compiled.asm["ptx"]
        assert compiled.metadata.shared <= 100 * 1024
