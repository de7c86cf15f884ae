"""The decode step: a static cache, no host values, one traced graph, CUDA graph replay."""

from __future__ import annotations

import pytest
import torch

import vlm
from tests.test_vlm_engine import _messages
from tests.tiny_checkpoints import tiny_checkpoint
from vlm.engine import Engine
from vlm.generate import decode_graph_breaks


@pytest.fixture(scope="module")
def engine():
    return vlm.load(tiny_checkpoint()[0], device="cpu", decode="eager")


def _twin(engine, decode: str) -> Engine:
    return Engine(engine.model, engine.processor, engine.cfg, name=engine.name, decode=decode)


def test_a_reply_never_reallocates_or_resizes_the_cache(engine):
    engine.reset()
    buffers = set()

    def watch(_text):
        c = engine._cache
        buffers.add((c.k.data_ptr(), c.v.data_ptr(), c.capacity))

    r = engine.chat(_messages(), max_new_tokens=40, ignore_end=True, on_text=watch)
    assert len(r.token_ids) == 40
    assert len(buffers) == 1
    (_, _, capacity), = buffers
    assert capacity % 512 == 0 and capacity >= engine.last_stats["prompt_tokens"] + 40


def test_decode_step_traces_as_one_graph_without_breaks(engine):
    engine.reset()
    engine.chat(_messages(), max_new_tokens=2)
    cache = engine._cache
    saved = cache.k.clone(), cache.v.clone()
    token, slot, rope = torch.tensor([7]), torch.tensor([30]), torch.tensor([33])
    explained = decode_graph_breaks(engine.model, cache, token, slot, rope)
    cache.k.copy_(saved[0])
    cache.v.copy_(saved[1])
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.slow
def test_compiled_decode_gives_the_eager_tokens_and_survives_a_bigger_cache(engine):
    compiled = _twin(engine, "compile")
    for prompt in (_messages(), _messages("a longer task " * 60)):
        engine.reset()
        want = engine.chat(prompt, max_new_tokens=24, ignore_end=True).token_ids
        got = compiled.chat(prompt, max_new_tokens=24, ignore_end=True).token_ids
        compiled.reset()
        assert got == want
    assert compiled._cache.capacity > 512  # the second prompt grew the cache: no recompile


def test_unknown_decode_mode_is_refused(engine):
    with pytest.raises(ValueError, match="decode mode"):
        _twin(engine, "turbo")
    with pytest.raises(ValueError, match="CUDA"):
        _twin(engine, "cuda_graph")


@pytest.mark.gpu
def test_cuda_graph_decode_gives_the_eager_tokens():
    eager = vlm.load(tiny_checkpoint()[0], device="cuda", decode="eager")
    graphs = _twin(eager, "cuda_graph")
    for prompt in (_messages(), _messages("a longer task " * 60)):
        eager.reset()
        want = eager.chat(prompt, max_new_tokens=24, ignore_end=True).token_ids
        got = graphs.chat(prompt, max_new_tokens=24, ignore_end=True).token_ids
        graphs.reset()
        assert got == want
    # one graph per cache buffer (capacity bucket): the grown cache's graph replaced the first
    assert list(graphs.decoder._graphs) == [graphs._cache.capacity]
