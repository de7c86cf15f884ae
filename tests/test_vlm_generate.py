"""Sampling, streaming detokenisation, stop handling and the KV cache."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_checkpoints import tiny_checkpoint
from vlm.cache import KVCache
from vlm.generate import TextStream, sample


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_checkpoint()[0]))


def _decode(tok):
    return lambda ids: tok.decode(ids, skip_special_tokens=False)


def test_greedy_is_argmax_and_tiny_top_p_is_greedy():
    logits = torch.tensor([0.1, 2.0, 1.9, -1.0])
    assert sample(logits) == 1
    g = torch.Generator().manual_seed(0)
    assert {sample(logits, 1.0, 1e-6, g) for _ in range(20)} == {1}


def test_top_p_keeps_only_the_nucleus_and_seed_reproduces():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    g = torch.Generator().manual_seed(1)
    draws = [sample(logits, 1.0, 0.7, g) for _ in range(300)]
    assert set(draws) == {0, 1}  # 0.5 + 0.3 covers 0.7; 2 and 3 are outside
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = [sample(logits, 0.8, 1.0, g1) for _ in range(50)]
    b = [sample(logits, 0.8, 1.0, g2) for _ in range(50)]
    assert a == b and len(set(a)) > 2


def test_stream_never_splits_multibyte_characters(tokenizer):
    text = "Thought: 语言 🙂 done"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    chunks = []
    stream = TextStream(_decode(tokenizer), [], chunks.append)
    pieces = [tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in p for p in pieces), "test needs a character split over tokens"
    for i in ids:
        stream.add(i)
    assert stream.finish() == text
    assert "".join(chunks) == text
    assert all("\ufffd" not in c for c in chunks)


def test_stop_string_cuts_text_and_is_never_streamed(tokenizer):
    ids = tokenizer("click(start_box) finished() more text", add_special_tokens=False)[
        "input_ids"]
    chunks = []
    stream = TextStream(_decode(tokenizer), ["finished()"], chunks.append)
    for i in ids:
        stream.add(i)
        if stream.stopped:
            break
    assert stream.stopped
    assert stream.finish() == "click(start_box) "
    assert "".join(chunks) == "click(start_box) "
    assert not any("fin" in c for c in chunks)


def test_kv_cache_grows_and_keeps_prefix():
    c = KVCache(2, 1, 4, capacity=3, dtype=torch.float32, device="cpu")
    k = torch.arange(12.0).view(3, 1, 4)
    c.update(0, 0, k, -k)
    c.length = 3
    c.reserve(5)
    assert c.capacity >= 6
    k_all, v_all = c.update(0, 3, torch.ones(2, 1, 4), torch.ones(2, 1, 4))
    assert k_all.shape == (5, 1, 4)
    assert torch.equal(k_all[:3], k) and torch.equal(v_all[:3], -k)


@pytest.fixture(scope="module")
def engine():
    import vlm

    return vlm.load(tiny_checkpoint()[0], device="cpu", decode="eager")


@pytest.mark.parametrize("cut", ["stop_string", "max_tokens"])
def test_reading_tokens_back_in_chunks_changes_nothing(engine, cut):
    """The CUDA rhythm (ids read back every few tokens, so the model may have run past the
    end) gives the same reply, the same streamed text and a cache the next step can trust."""
    from tests.test_vlm_engine import _messages

    engine.sync_every = None
    engine.reset()
    full = engine.chat(_messages(), max_new_tokens=16, ignore_end=True)
    stop = [full.text[5:8]] if cut == "stop_string" else None
    results = []
    for every in (1, 5):
        engine.reset()
        engine.sync_every = every
        chunks = []
        r = engine.chat(_messages(), max_new_tokens=11, stop=stop, on_text=chunks.append)
        follow = _messages() + [{"role": "assistant", "content": r.text},
                                {"role": "user", "content": "next"}]
        nxt = engine.chat(follow, max_new_tokens=6)
        results.append((r.token_ids, r.text, "".join(chunks), nxt.token_ids,
                        engine.last_logits.clone()))
    engine.sync_every = None
    (ids1, text1, streamed1, next1, logits1), (ids5, text5, streamed5, next5, logits5) = results
    assert ids1 == ids5 and text1 == text5 == streamed1 == streamed5
    assert next1 == next5
    torch.testing.assert_close(logits1, logits5, atol=1e-5, rtol=0)
