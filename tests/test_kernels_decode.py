"""Split-K decode attention: the reference against dense softmax, the split choice, the Triton
kernels against the reference on odd cache lengths (in Triton's CPU interpreter, via a child
pytest), the dispatch routing decode calls to it, an sm_90 compile check, and a CUDA sweep."""

from __future__ import annotations

import os

import pytest
import torch

from kernels.decode import choose_splits, decode_attention_ref
from kernels.testing import run_interpreter_pytest, within_rule

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
in_interpreter = pytest.mark.skipif(not INTERPRETER, reason="runs in the interpreter child")
in_parent = pytest.mark.skipif(INTERPRETER, reason="runs in the parent process")
ODD_LENGTHS = [1, 33, 123, 511]  # one sequence each, in one batched call


def make_cache(lengths, hq, hkv, d, dtype, capacity=None, seed=0, device="cpu"):
    """q (B, Hq, D), head-major caches (B, Hkv, capacity, D) with junk past each length."""
    g = torch.Generator().manual_seed(seed)
    capacity = capacity or max(lengths)
    b = len(lengths)
    q = torch.randn(b, hq, d, generator=g).to(device, dtype)
    k = torch.randn(b, hkv, capacity, d, generator=g).to(device, dtype)
    v = torch.randn(b, hkv, capacity, d, generator=g).to(device, dtype)
    lens = torch.tensor(lengths, dtype=torch.int32, device=device)
    return q, k, v, lens


def naive_decode(q, k, v, lens):
    """float64 softmax per sequence over its valid keys, kv heads repeated per group."""
    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    out = torch.zeros(q.shape, dtype=torch.float64)
    for b, n in enumerate(lens.tolist()):
        if n == 0:
            continue
        kb = k[b, :, :n].double().repeat_interleave(hq // hkv, 0)  # (Hq, n, D)
        vb = v[b, :, :n].double().repeat_interleave(hq // hkv, 0)
        probs = torch.softmax((kb @ q[b].double()[:, :, None])[..., 0] * d**-0.5, -1)
        out[b] = (probs[:, None, :] @ vb)[:, 0]
    return out


@in_parent
@pytest.mark.parametrize("lengths", [ODD_LENGTHS, [0, 5]], ids=["odd", "empty"])
def test_reference_matches_dense_softmax(lengths):
    q, k, v, lens = make_cache(lengths, 8, 2, 64, torch.float32, capacity=520)
    out = decode_attention_ref(q, k, v, lens)
    torch.testing.assert_close(out.double(), naive_decode(q, k, v, lens), atol=2e-5, rtol=1e-4)


@in_parent
def test_reference_traces_without_host_reads():
    q, k, v, lens = make_cache([3, 17], 4, 2, 32, torch.float32)
    explained = torch._dynamo.explain(decode_attention_ref)(q, k, v, lens)
    assert explained.graph_break_count == 0, explained.break_reasons


@in_parent
def test_split_choice_fills_the_gpu():
    # Qwen3-VL-30B decode on an H100/H200: 4 kv heads, 132 SMs
    splits, chunk = choose_splits(4, 16384, 132, 64)
    assert splits * 4 >= 132 and chunk % 64 == 0 and splits * chunk >= 16384
    splits_4k, chunk_4k = choose_splits(4, 4096, 132, 64)
    assert splits_4k == 32 and chunk_4k == 128  # never fewer than 128 keys per split
    assert choose_splits(4, 100, 132, 64) == (1, 128)  # short caches: one split
    assert choose_splits(1024, 16384, 132, 64)[0] == 1  # the batch already fills the chip
    for programs, keys in ((1, 1), (3, 511), (28, 7000), (4, 10**6)):
        splits, chunk = choose_splits(programs, keys, 132, 64)
        assert (splits - 1) * chunk < keys <= splits * chunk  # every split has a key


@in_parent
def test_triton_kernels_in_interpreter():
    """Runs this file's interpreter tests in a child with TRITON_INTERPRET=1."""
    rc, output = run_interpreter_pytest(__file__)
    assert rc == 0, output[-6000:]
    assert " passed" in output, output[-2000:]
    assert "runs in the interpreter child" not in output, output[-2000:]  # none skipped


def _check(lengths, hq, hkv, d, dtype, device="cpu", **kwargs):
    from kernels.decode import decode_attention

    q, k, v, lens = make_cache(lengths, hq, hkv, d, dtype, device=device)
    out = decode_attention(q, k, v, lens, **kwargs)
    ref32 = decode_attention_ref(q.float(), k.float(), v.float(), lens)
    ok, msg = within_rule(out, ref32, decode_attention_ref(q, k, v, lens))
    assert ok, msg
    return out


@in_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_kernel_matches_reference_odd_lengths(dtype):
    """GQA 4/2, lengths 1..511 in one batch, the automatic split choice (several splits)."""
    _check(ODD_LENGTHS, 4, 2, 64, dtype)


@in_interpreter
@pytest.mark.parametrize("num_splits", [1, 3, 7])
def test_split_count_does_not_change_the_result(num_splits):
    """A non-power-of-two head dim (80), splits that do not divide the length."""
    _check([33, 123], 2, 1, 80, torch.float16, num_splits=num_splits)


@in_interpreter
def test_empty_sequence_outputs_zeros():
    out = _check([0, 40], 2, 2, 16, torch.float32, num_splits=3)
    assert out[0].abs().max().item() == 0.0


@in_interpreter
def test_strided_cache_views():
    """The engine passes views of a larger (layers, heads, capacity, D) buffer."""
    from kernels.decode import decode_attention

    q, k, v, lens = make_cache([70], 4, 2, 32, torch.float16, capacity=100)
    k_view, v_view = k[:, :, :80], v[:, :, :80]  # not contiguous over the capacity
    out = decode_attention(q, k_view, v_view, lens, num_splits=2)
    ref32 = decode_attention_ref(q.float(), k.float(), v.float(), lens)
    ok, msg = within_rule(out, ref32, decode_attention_ref(q, k, v, lens))
    assert ok, msg


@in_interpreter
@pytest.mark.parametrize("causal", [False, True])
def test_varlen_layout_matches_varlen_reference(causal):
    """Packed layout (kernels.varlen_attention's contract), 1-3 query rows per sequence."""
    from kernels.attention import varlen_attention_ref
    from kernels.decode import split_kv_varlen_attention
    from tests.test_kernels_attention import make

    args = make([1, 3, 2], [33, 123, 2], 4, 2, 64, torch.bfloat16)
    out = split_kv_varlen_attention(*args, causal=causal, num_splits=4)
    ref32 = varlen_attention_ref(*(a.float() for a in args[:3]), *args[3:], causal=causal)
    ok, msg = within_rule(out, ref32, varlen_attention_ref(*args, causal=causal))
    assert ok, msg


@in_interpreter
def test_dispatch_routes_decode_to_split_k(monkeypatch):
    """kernels.varlen_attention sends a few-row call over a long cache to the split-K path."""
    import kernels
    from kernels import decode as dec
    from kernels.attention import varlen_attention_ref
    from tests.test_kernels_attention import make

    calls = []
    real = dec.split_kv_varlen_attention
    monkeypatch.setattr(dec, "split_kv_varlen_attention",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    # the decoder's decode call: the 4 query heads of one kv head as 4 rows of one sequence
    args = make([4], [300], 2, 2, 64, torch.float16)
    out = kernels.varlen_attention(*args)
    assert calls == [1]
    ref32 = varlen_attention_ref(*(a.float() for a in args[:3]), *args[3:])
    ok, msg = within_rule(out, ref32, varlen_attention_ref(*args))
    assert ok, msg
    out = kernels.decode_attention(*make_cache([5, 200], 4, 2, 32, torch.float16))
    assert out.shape == (2, 4, 32)


@in_interpreter
def test_kernel_rejects_bad_input():
    from kernels.decode import decode_attention

    q, k, v, lens = make_cache([4, 9], 3, 2, 32, torch.float16)
    with pytest.raises(ValueError, match="not a multiple"):
        decode_attention(q, k, v, lens)
    q, k, v, lens = make_cache([4, 9], 4, 2, 32, torch.float16)
    with pytest.raises(ValueError, match="int32"):
        decode_attention(q, k, v, lens.long())
    with pytest.raises(TypeError, match="fp16/bf16/fp32"):
        decode_attention(q, k.float(), v, lens)
    with pytest.raises(ValueError, match="batch"):
        decode_attention(q[:1], k, v, lens[:1])


GPU_CASES = [  # (cache lengths, Hq, Hkv, D)
    ([4096], 32, 4, 128),  # Qwen3-VL-30B-A3B decode
    ([16384], 32, 4, 128),
    ([1, 33, 123, 511, 8191, 16000], 32, 4, 128),
    ([3000, 7000], 28, 4, 128),  # UI-TARS-1.5-7B
]


@in_parent
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("case", GPU_CASES, ids=["4k", "16k", "odd", "uitars"])
def test_kernel_on_cuda(case, dtype):
    _check(*case, dtype, device="cuda")


@in_parent
@pytest.mark.parametrize("dt,d,varlen,causal", [("bf16", 128, False, False),
                                               ("fp16", 80, True, True),
                                               ("fp32", 128, False, False)])
def test_kernels_compile_for_h100(dt, d, varlen, causal):
    """The GPU launch configs of both passes compile to sm_90 code (checked without a GPU)."""
    from kernels.decode import _combine_kernel, _launch_config, _split_kv_kernel
    from kernels.testing import compile_for_gpu

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dt]
    cfg = _launch_config(d, torch_dtype, interpret=False)
    block_d = max(16, 1 << (d - 1).bit_length())
    sig = {n: f"*{dt}" for n in "QKV"} | {n: "*fp32" for n in ("WS_M", "WS_L", "WS_ACC")}
    sig |= {n: "*i32" for n in ("CU_Q", "CU_K", "SEQLENS_K")}
    sig |= {"n_rows": "i32", "n_splits": "i32", "chunk": "i32", "GROUP": "i32",
            "qk_scale": "fp32"}
    sig |= {f"stride_{t}{a}": "i32" for t in "qkv" for a in "bth"}
    compiled = compile_for_gpu(
        _split_kv_kernel, sig,
        dict(HEAD_DIM=d, BLOCK_M=16, BLOCK_N=cfg["BLOCK_N"], BLOCK_D=block_d, VARLEN=varlen,
             CAUSAL=causal, INTERPRET=False, DOT_PRECISION="ieee" if dt == "fp32" else None),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if dt != "fp32":  # fp32 asks for exact ("ieee") dots, FMA loops by design
        assert "mma" in compiled.asm["ptx"]
    assert compiled.metadata.shared <= 100 * 1024
    combine_sig = {n: "*fp32" for n in ("WS_M", "WS_L", "WS_ACC")} | {"O": f"*{dt}",
                                                                       "CU_Q": "*i32"}
    combine_sig |= {n: "i32" for n in ("n_rows", "n_splits", "stride_ob", "stride_ot",
                                       "stride_oh")}
    compile_for_gpu(_combine_kernel, combine_sig,
                    dict(HEAD_DIM=d, BLOCK_M=16, BLOCK_D=block_d, SPLITS_PAD=64,
                         VARLEN=varlen, INTERPRET=False), num_warps=4)
