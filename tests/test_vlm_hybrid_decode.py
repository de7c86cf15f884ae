"""The Qwen3.5 (Gated DeltaNet + gated attention) decode step: device slot, no host values.

The step writes the attention layers' K/V at a device row and advances the DeltaNet conv
and recurrent states in place. Its logits must equal one chunked prefill of the same
sequence, its tokens those of the per-token prefill path it replaced, it must trace as one
graph, and the engine's record of where the states are (prefix resume) must stay right.
"""

from __future__ import annotations

import pytest
import torch

import vlm
from tests.test_vlm_engine import _messages
from tests.tiny_checkpoints import tiny_qwen35_checkpoint
from tests.vlm_parity_checks import TOL
from vlm.engine import Engine
from vlm.generate import decode_graph_breaks, decode_one_token, prefill
from vlm.model import rope_index

STEPS = 20


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    return vlm.load(tiny_qwen35_checkpoint("qwen3_5_moe")[0], device="cpu", decode="eager")


def _prompt(engine):
    """(ids, positions (3, T), delta, image embeds) of a one-image prompt."""
    prompt = engine.processor(_messages())
    grids = [img.grid for img in prompt.images]
    with torch.inference_mode():
        embeds, _ = engine.model.encode_images(torch.cat([img.pixels for img in prompt.images]),
                                               grids)
    cfg = engine.cfg
    pos, delta = rope_index(prompt.input_ids, grids, cfg.image_token_id,
                            cfg.vision.spatial_merge_size)
    return prompt.input_ids, pos, delta, embeds


def test_decode_steps_equal_one_prefill_and_the_per_token_prefill_path(engine):
    model = engine.model
    ids, pos, delta, embeds = _prompt(engine)
    n = len(ids)
    assert delta != 0  # the image shifts decode positions off the cache rows
    stepped, per_token = model.new_cache(n + STEPS), model.new_cache(n + STEPS)
    first = prefill(model, stepped, torch.tensor(ids), pos, 0, embeds)
    prefill(model, per_token, torch.tensor(ids), pos, 0, embeds)

    tokens, logits, nxt = [], [], first
    for i in range(STEPS):
        tokens.append(int(nxt.argmax()))
        nxt = decode_one_token(model, stepped, torch.tensor([tokens[-1]]), n + i, delta)
        logits.append(nxt)
    assert len(set(tokens)) > 3, "degenerate test: greedy output should vary"

    # the path the step replaced: each token through the prefill forward at a host row
    old, nxt = [], first
    for i in range(STEPS):
        old.append(int(nxt.argmax()))
        nxt = prefill(model, per_token, torch.tensor([old[-1]]),
                      torch.full((3, 1), n + i + delta), n + i)
    assert tokens == old

    # the whole sequence in one prefill (chunked delta rule, causal attention)
    whole_ids = ids + tokens
    whole_pos, _ = rope_index(whole_ids, [engine.processor(_messages()).images[0].grid],
                              engine.cfg.image_token_id, engine.cfg.vision.spatial_merge_size)
    whole = model.new_cache(n + STEPS)
    ref = prefill(model, whole, torch.tensor(whole_ids), whole_pos, 0, embeds, all_logits=True)
    torch.testing.assert_close(torch.stack(logits), ref[n:], atol=TOL, rtol=0)
    # and the caches hold the same: K/V rows, DeltaNet states, and where the states are
    rows = n + STEPS
    torch.testing.assert_close(stepped.k[:, :, :rows], whole.k[:, :, :rows], atol=1e-5, rtol=0)
    torch.testing.assert_close(stepped.v[:, :, :rows], whole.v[:, :, :rows], atol=1e-5, rtol=0)
    torch.testing.assert_close(stepped.recurrent, whole.recurrent, atol=1e-5, rtol=0)
    torch.testing.assert_close(stepped.conv, whole.conv, atol=1e-5, rtol=0)
    assert stepped.live == whole.live == rows


def test_hybrid_decode_step_traces_as_one_graph_without_breaks(engine):
    engine.reset()
    engine.chat(_messages(), max_new_tokens=2)
    cache = engine._cache
    saved = [t.clone() for t in (cache.k, cache.v, cache.recurrent, cache.conv)]
    token, slot, rope = torch.tensor([7]), torch.tensor([30]), torch.tensor([33])
    explained = decode_graph_breaks(engine.model, cache, token, slot, rope)
    for buf, old in zip((cache.k, cache.v, cache.recurrent, cache.conv), saved):
        buf.copy_(old)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    engine.reset()


def test_engine_records_where_the_decoded_states_are(engine):
    engine.reset()
    r = engine.chat(_messages(), max_new_tokens=6, ignore_end=True)
    prompt = engine.last_stats["prompt_tokens"]
    # the last token is sampled, not fed: the states hold the prompt and 5 decoded tokens,
    # exactly the cached prefix, so the next step of the conversation resumes from them
    assert engine._cache.live == prompt + len(r.token_ids) - 1 == len(engine._cached_ids)

    def fail(_text):
        raise RuntimeError("the listener failed")

    with pytest.raises(RuntimeError, match="listener"):
        engine.chat(_messages("Another task."), max_new_tokens=6, on_text=fail)
    # the reply stopped between decode steps: no record claims to know the states
    assert engine._cache.live is None
    again = engine.chat(_messages("Another task."), max_new_tokens=6)
    logits = engine.last_logits.clone()
    engine.reset()
    fresh = engine.chat(_messages("Another task."), max_new_tokens=6)
    assert again.token_ids == fresh.token_ids
    torch.testing.assert_close(logits, engine.last_logits, atol=1e-5, rtol=0)


def test_steps_run_ahead_of_a_stop_string_are_not_resumed_from(engine):
    """On CUDA the loop reads tokens back every few steps, so it can feed tokens past the
    end of the reply; the K/V rows are cut back, but the recurrent states have folded them
    in: the next prompt must not resume from those states."""
    engine.reset()
    reply = engine.chat(_messages(), max_new_tokens=16, ignore_end=True)
    # (the tiny tokenizer's pieces are mostly odd bytes: any printable one ends the reply)
    pieces = [engine.processor.decode([t]) for t in reply.token_ids[1:10]]
    stop = next(p for p in pieces if p.strip() and p.isprintable() and "\ufffd" not in p)
    engine.reset()
    engine.sync_every = 16  # one read, after the last step
    try:
        cut = engine.chat(_messages(), max_new_tokens=16, stop=[stop])
        assert engine._cache.live > len(engine._cached_ids)  # it ran ahead
        turn = _messages() + [{"role": "assistant", "content": [{"type": "text",
                                                                 "text": cut.text}]},
                              {"role": "user", "content": [{"type": "text", "text": "Next."}]}]
        resumed = engine.chat(turn, max_new_tokens=6)
        logits = engine.last_logits.clone()
    finally:
        engine.sync_every = None
    engine.reset()
    assert resumed.token_ids == engine.chat(turn, max_new_tokens=6).token_ids
    torch.testing.assert_close(logits, engine.last_logits, atol=1e-5, rtol=0)


def _same_tokens_and_resume(eager: Engine, twin: Engine) -> None:
    """`twin` (compiled or captured step) replies as `eager`, and its next agent step,
    resumed from the states its step left, equals eager's recompute."""
    eager.reset()
    want = eager.chat(_messages(), max_new_tokens=STEPS, ignore_end=True)
    got = twin.chat(_messages(), max_new_tokens=STEPS, ignore_end=True)
    assert got.token_ids == want.token_ids
    turn = _messages() + [{"role": "assistant", "content": [{"type": "text",
                                                             "text": got.text}]},
                          {"role": "user", "content": [{"type": "text", "text": "Next."}]}]
    resumed = twin.chat(turn, max_new_tokens=8, ignore_end=True)
    assert twin.last_stats["reused_tokens"] > 0
    eager.reset()
    assert resumed.token_ids == eager.chat(turn, max_new_tokens=8, ignore_end=True).token_ids


def _twin(engine: Engine, decode: str) -> Engine:
    return Engine(engine.model, engine.processor, engine.cfg, name=engine.name, decode=decode)


@pytest.mark.slow
def test_compiled_hybrid_decode_gives_the_eager_tokens_and_resumes(engine):
    compiled = _twin(engine, "compile")
    _same_tokens_and_resume(engine, compiled)
    assert compiled.decoder.mode == "compile"  # traced, not the eager fallback


@pytest.mark.gpu
def test_cuda_graph_hybrid_decode_gives_the_eager_tokens_and_resumes():
    eager = vlm.load(tiny_qwen35_checkpoint("qwen3_5_moe")[0], device="cuda", decode="eager")
    graphs = _twin(eager, "cuda_graph")
    _same_tokens_and_resume(eager, graphs)
    assert list(graphs.decoder._graphs) == [graphs._cache.capacity]
