"""Our Qwen3.5 family (hybrid Gated DeltaNet / gated attention decoder) against transformers'
(fp32, CPU, tiny random checkpoints written by save_pretrained at test time).

Oracles: `Qwen3_5MoeForConditionalGeneration` and the dense `Qwen3_5ForConditionalGeneration`
(eager attention and experts). The config mixes linear and full attention layers, uses GQA,
partial rotary with an unequal interleaved mrope_section, DeltaNet with more value than
q/k heads, a shared expert; the prompt holds three images of different sizes and is longer
than one 64-token DeltaNet chunk. Also: the engine's prefix reuse across agent steps equals
a recompute, and both expert layouts (published per-expert, transformers' fused) load.
"""

from __future__ import annotations

import pytest
import torch

import vlm
from tests.tiny_checkpoints import MAX_PIXELS, MIN_PIXELS, tiny_qwen35_checkpoint
from tests.vlm_parity_checks import (
    TOL,
    check_engine_generate,
    check_prefill_and_decode,
    hf_inputs,
    noise_image,
    two_image_messages,
)
from vlm.deltanet import GatedDeltaNet
from vlm.hybrid_cache import HybridCache
from vlm.qwen3_5 import GatedAttention, SharedExpertMoe


def messages() -> list[dict]:
    msgs = two_image_messages((100, 70), (70, 140))
    msgs[1]["content"] += [{"type": "image", "image": noise_image(256, 160, 3)},
                           {"type": "text", "text": "Then type hello world."}]
    return msgs


@pytest.fixture(scope="module")
def moe():
    torch.manual_seed(0)
    folder, hf = tiny_qwen35_checkpoint("qwen3_5_moe")
    engine = vlm.load(folder, device="cpu")
    return engine, hf, engine.processor(messages())


def test_model_has_every_qwen35_path(moe):
    engine, _, prompt = moe
    assert engine.cfg.family == "qwen3_5_moe"
    layers = engine.model.language_model.layers
    kinds = [type(layer.linear_attn if layer.linear else layer.self_attn) for layer in layers]
    assert kinds.count(GatedDeltaNet) >= 2 and kinds.count(GatedAttention) >= 2
    assert all(isinstance(layer.mlp, SharedExpertMoe) for layer in layers)
    t = engine.cfg.text
    assert t.num_attention_heads > t.num_key_value_heads  # GQA
    assert t.rotary_dim < t.head_dim and len(set(t.mrope_section)) > 1  # partial rotary
    assert t.linear_num_value_heads > t.linear_num_key_heads
    assert t.linear_key_head_dim != t.linear_value_head_dim
    assert engine.cfg.vision.deepstack_visual_indexes == []
    grids = [img.grid for img in prompt.images]
    assert len(set(grids)) == 3
    assert len(prompt.input_ids) > 64  # more than one DeltaNet chunk
    assert isinstance(engine.model.new_cache(8), HybridCache)
    # image bounds come from the checkpoint's preprocessor_config.json, not the defaults
    image = engine.processor.image
    assert (image.min_pixels, image.max_pixels, image.patch_size) == (MIN_PIXELS, MAX_PIXELS, 16)


def test_vision_features_match_without_deepstack(moe):
    engine, hf, prompt = moe
    inputs = hf_inputs(engine, prompt)
    with torch.no_grad():
        ref = hf.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
        ours, ours_ds = engine.model.encode_images(inputs["pixel_values"],
                                                   [img.grid for img in prompt.images])
    torch.testing.assert_close(ours, ref.pooler_output, atol=TOL, rtol=0)
    assert ours_ds == []


def test_prefill_and_32_decode_steps_match_logits(moe):
    engine, hf, prompt = moe
    check_prefill_and_decode(engine, hf, prompt, steps=32)


def test_engine_greedy_32_tokens_equal_transformers_generate(moe):
    engine, hf, prompt = moe
    check_engine_generate(engine, hf, messages(), prompt, n=32)


def test_fused_expert_layout_loads_the_same_weights(moe):
    engine, _, _ = moe
    folder, _ = tiny_qwen35_checkpoint("qwen3_5_moe", layout="fused")
    from safetensors import safe_open

    with safe_open(next(folder.glob("*.safetensors")), framework="pt") as f:
        assert any(n.endswith("mlp.experts.gate_up_proj") for n in f.keys())
    fused = vlm.load(folder, device="cpu")
    theirs = dict(fused.model.named_parameters())
    for name, p in engine.model.named_parameters():
        assert torch.equal(p, theirs[name]), name


def test_missing_expert_is_reported_by_name(tmp_path, moe):
    import shutil

    from safetensors.torch import load_file, save_file

    from vlm.weights import WeightsError

    folder, _ = tiny_qwen35_checkpoint("qwen3_5_moe")
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    f = next(tmp_path.glob("*.safetensors"))
    tensors = load_file(f)
    del tensors["model.language_model.layers.2.mlp.experts.5.up_proj.weight"]
    save_file(tensors, f, metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"layers\.2\.mlp\.experts\.gate_up_proj expert "
                                           r"5\.up_proj"):
        vlm.load(tmp_path, device="cpu")


def _agent_steps(engine, n_steps: int = 3):
    """Append-only agent conversation: each step adds the reply and a new screenshot."""
    msgs = messages()[:1] + [{"role": "user", "content": [
        {"type": "image", "image": noise_image(100, 70, 10)},
        {"type": "text", "text": "Click the OK button."}]}]
    for step in range(n_steps):
        r = engine.chat(msgs, max_new_tokens=6)
        yield msgs, r, dict(engine.last_stats), engine.last_logits.clone()
        msgs = msgs + [{"role": "assistant", "content": r.text},
                       {"role": "user", "content": [
                           {"type": "image", "image": noise_image(70, 100, 20 + step)},
                           {"type": "text", "text": "Next step."}]}]


def test_prefix_reuse_between_steps_equals_recompute(moe):
    engine, _, _ = moe
    engine.reset()
    fresh = vlm.load(tiny_qwen35_checkpoint("qwen3_5_moe")[0], device="cpu")
    previous_prompt = 0
    for step, (msgs, r, stats, logits) in enumerate(_agent_steps(engine)):
        if step:
            # resumed from the state after the previous reply or at the previous prompt's end
            assert stats["reused_tokens"] >= previous_prompt > 0
        previous_prompt = stats["prompt_tokens"]
        fresh.reset()
        ref = fresh.chat(msgs, max_new_tokens=6)
        assert fresh.last_stats["reused_tokens"] == 0
        assert r.token_ids == ref.token_ids
        torch.testing.assert_close(logits, fresh.last_logits, atol=1e-5, rtol=0)


def test_prompt_diverging_before_every_snapshot_is_recomputed(moe):
    engine, _, _ = moe
    engine.reset()
    steps = list(_agent_steps(engine, 2))
    msgs = steps[-1][0]
    # drop the oldest screenshot, as history_n does: the prompt changes before any state
    # the cache kept, so the recurrent layers must start over (K/V alone cannot resume)
    dropped = [msgs[0], {"role": "user", "content": [{"type": "text",
                                                      "text": "Click the OK button."}]}]
    dropped += msgs[2:]
    r = engine.chat(dropped, max_new_tokens=6)
    reused = engine.last_stats["reused_tokens"]
    logits = engine.last_logits.clone()
    engine.reset()
    ref = engine.chat(dropped, max_new_tokens=6)
    assert reused < steps[0][2]["prompt_tokens"]
    assert r.token_ids == ref.token_ids
    torch.testing.assert_close(logits, engine.last_logits, atol=1e-5, rtol=0)


def test_dense_qwen35_matches_transformers():
    torch.manual_seed(0)
    folder, hf = tiny_qwen35_checkpoint("qwen3_5")
    engine = vlm.load(folder, device="cpu")
    assert engine.cfg.family == "qwen3_5" and engine.cfg.text.num_experts == 0
    check_prefill_and_decode(engine, hf, engine.processor(messages()), steps=32)


def test_prompt_diverging_inside_the_reply_header_resumes_before_it(moe):
    """Templates may render the previous reply differently once it is history (Qwen3.5's
    drops its <think> text, and its generation prompt differs from its history header), so
    the next prompt can diverge right after the reply's `<|im_start|>`, before the
    end-of-prompt snapshot. The prefill keeps a state before that header too. Here the next
    prompt omits the reply, so it diverges inside the header ("assistant" vs "user")."""
    engine, _, _ = moe
    engine.reset()
    first = messages()[:1] + [{"role": "user", "content": [
        {"type": "image", "image": noise_image(100, 70, 10)},
        {"type": "text", "text": "Click the OK button."}]}]
    engine.chat(first, max_new_tokens=6)
    ids = engine.processor(first).input_ids
    im_start = engine.processor.tokenizer.convert_tokens_to_ids("<|im_start|>")
    header = max(i for i, t in enumerate(ids) if t == im_start)
    assert header < len(ids) - 1
    second = first + [{"role": "user", "content": [{"type": "text", "text": "Next step."}]}]
    again = engine.chat(second, max_new_tokens=6)
    assert engine.last_stats["reused_tokens"] == header
    logits = engine.last_logits.clone()
    engine.reset()
    ref = engine.chat(second, max_new_tokens=6)
    assert engine.last_stats["reused_tokens"] == 0
    assert again.token_ids == ref.token_ids
    torch.testing.assert_close(logits, engine.last_logits, atol=1e-5, rtol=0)
