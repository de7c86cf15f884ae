"""Our Qwen2.5-VL (UI-TARS-1.5's architecture) against transformers' (fp32, CPU, tiny).

The checkpoint on disk is in the published layout (tensors `visual.*` / `model.*`, text
fields at the top of config.json, `rope_scaling` {"type": "mrope"}); the oracle is
`transformers.Qwen2_5_VLForConditionalGeneration` (eager attention) holding the same weights.
The two images have merged grids that are not multiples of the 4x4-token window, so partial
windows at the right and bottom edges are exercised, in both windowed and global blocks.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import vlm
from tests.tiny_checkpoints import tiny_family_checkpoint
from tests.vlm_parity_checks import (
    TOL,
    check_engine_generate,
    check_prefill_and_decode,
    full_frames,
    hf_inputs,
    two_image_messages,
)

SIZES = ((140, 168), (252, 112))  # (width, height): multiples of 28, no resampling


def messages() -> list[dict]:
    return two_image_messages(*SIZES)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    folder, hf = tiny_family_checkpoint("qwen2_5_vl", "published")
    engine = vlm.load(folder, device="cpu")
    return engine, hf, engine.processor(messages())


def test_prompt_exercises_partial_windows_and_both_block_kinds(setup):
    engine, _, prompt = setup
    v = engine.cfg.vision
    assert [img.grid for img in prompt.images] == [(1, 12, 10), (1, 8, 18)]
    window = v.window_size // (v.patch_size * v.spatial_merge_size)  # merged tokens
    assert window == 4
    for _, h, w in (img.grid for img in prompt.images):
        gh, gw = h // 2, w // 2
        assert gh % window or gw % window  # a partial window
        assert math.ceil(gh / window) * math.ceil(gw / window) > 1  # several windows
    assert v.fullatt_block_indexes and len(v.fullatt_block_indexes) < v.depth
    t = engine.cfg.text
    assert not t.qk_norm and t.qkv_bias and not t.mrope_interleaved
    assert len(set(t.mrope_section)) > 1


def test_processor_uses_factor_28_and_clip_normalisation(setup):
    """Same patches and ids as transformers' own Qwen2.5-VL processor for this folder."""
    from transformers import AutoProcessor

    engine, _, prompt = setup
    hf_proc = AutoProcessor.from_pretrained(str(engine.processor.folder))
    images = [p["image"] for p in messages()[1]["content"] if p["type"] == "image"]
    text = engine.processor.render(messages())
    ref = hf_proc(text=[text], images=images, return_tensors="pt")
    assert ref["input_ids"][0].tolist() == prompt.input_ids
    assert ref["image_grid_thw"].tolist() == [list(img.grid) for img in prompt.images]
    ours = full_frames(engine, torch.cat([img.pixels for img in prompt.images]))
    torch.testing.assert_close(ours, ref["pixel_values"], atol=1e-5, rtol=0)


def test_vision_features_match(setup):
    engine, hf, prompt = setup
    inputs = hf_inputs(engine, prompt)
    grids = [img.grid for img in prompt.images]
    with torch.no_grad():
        ref = hf.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
        ours, deepstack = engine.model.encode_images(inputs["pixel_values"], grids)
    assert deepstack == []
    assert ours.shape == ref.pooler_output.shape == (30 + 36, engine.cfg.text.hidden_size)
    torch.testing.assert_close(ours, ref.pooler_output, atol=TOL, rtol=0)

    # the windows matter: attending globally in every block gives other features
    v = engine.cfg.vision
    saved = v.fullatt_block_indexes
    v.fullatt_block_indexes = list(range(v.depth))
    try:
        with torch.no_grad():
            global_only, _ = engine.model.encode_images(inputs["pixel_values"], grids)
    finally:
        v.fullatt_block_indexes = saved
    assert (global_only - ref.pooler_output).abs().max() > 1e-2


def test_prefill_and_32_decode_steps_match_logits(setup):
    engine, hf, prompt = setup
    check_prefill_and_decode(engine, hf, prompt, steps=32)


def test_engine_greedy_32_tokens_equal_transformers_generate(setup):
    engine, hf, prompt = setup
    check_engine_generate(engine, hf, messages(), prompt, n=32)


@pytest.mark.parametrize("layout", ["saved", "nested"])
def test_every_tensor_naming_loads_the_same_weights(setup, layout):
    """transformers 5.x's save (nested config) and 4.52-4.57's `model.visual.*` /
    `model.language_model.*` names load to exactly the published file's tensors."""
    engine, _, _ = setup
    folder, _ = tiny_family_checkpoint("qwen2_5_vl", layout)
    other = vlm.load(folder, device="cpu")
    ours = engine.model.state_dict()
    theirs = other.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert other.cfg.text == engine.cfg.text and other.cfg.vision == engine.cfg.vision


def test_dialect_is_picked_from_the_published_config(setup):
    from agent.dialects import dialect_for_checkpoint

    engine, _, _ = setup
    config = json.loads((engine.processor.folder / "config.json").read_text())
    assert "text_config" not in config  # the published, flat layout
    assert dialect_for_checkpoint(config) == "uitars-1.5"
    assert dialect_for_checkpoint(engine.config_dict) == "uitars-1.5"


def test_uitars_config_builds_transformers_exact_tensor_set():
    """assets/configs/uitars-1.5-7b.json (the published flat layout) gives the same tensor
    names and shapes as transformers' model for that config: 8.29B parameters."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from vlm.bench import CONFIG_DIR
    from vlm.config import ModelConfig
    from vlm.model import QwenVL
    from vlm.weights import checkpoint_name

    raw = json.loads((CONFIG_DIR / "uitars-1.5-7b.json").read_text())
    cfg = ModelConfig.from_dict(raw)
    assert (cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.text.head_dim) == (3584, 28, 128)
    assert cfg.vision.fullatt_block_indexes == [7, 15, 23, 31] and cfg.vision.window_size == 112
    with torch.device("meta"):
        ours = QwenVL(cfg)
        ref = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**raw))
    ours_shapes = {checkpoint_name(k): tuple(v.shape) for k, v in ours.state_dict().items()}
    assert ours_shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert round(sum(p.numel() for p in ours.parameters()) / 1e9, 2) == 8.29


@pytest.mark.slow
def test_bench_step_runs_the_uitars_family_against_transformers(tmp_path):
    from app.cli import main as cli

    out = tmp_path / "bench.json"
    rc = cli(["bench", "step", "--config", "uitars-tiny", "--device", "cpu", "--screen",
              "300x200", "--decode-tokens", "2", "--warmup", "0", "--compare", "transformers",
              "--json", str(out)])
    assert rc == 0
    first, second, cold = json.loads(out.read_text())["steps"]
    assert first["prompt_tokens"] > 11 * 7  # 308x196 screenshot: 11x7 merged tokens
    assert second["reused_tokens"] >= first["prompt_tokens"] and second["images_encoded"] == 1
    assert cold["reused_tokens"] == 0 and cold["images_encoded"] == 2  # transformers' work
    assert all(step["phases"]["total"]["transformers_s"] > 0 for step in (first, second, cold))


@pytest.mark.slow
def test_deskpilot_run_with_the_local_checkpoint_speaks_uitars(tmp_path, monkeypatch, capsys):
    """`deskpilot run --policy local:PATH` with dialect auto: the published Qwen2.5-VL
    config.json selects uitars-1.5 and our engine answers each step (random weights write
    gibberish, so the run ends after the parse-error retries, every reply recorded)."""
    from agent.settings import Settings
    from agent.trajectory import load_run
    from app.commands import run as run_cmd

    monkeypatch.setenv("DESKPILOT_CONFIG_DIR", str(tmp_path / "cfg"))
    folder, _ = tiny_family_checkpoint("qwen2_5_vl", "published")
    max_pixels = 200 * 28 * 28  # small, above the UI-TARS dialect's minimum (100 x 28 x 28)
    Settings(max_pixels=max_pixels, device="cpu", dialect="auto").save()
    runs = tmp_path / "runs"
    code = run_cmd.main(["do the task", "--policy", f"local:{folder}", "--env", "memory",
                         "--record", str(runs), "--max-new-tokens", "8"])
    assert code == 1 and "outcome: error" in capsys.readouterr().out
    (run_dir,) = runs.iterdir()
    recorded = load_run(run_dir)
    assert recorded.meta["dialect"] == "uitars-1.5" and recorded.meta["backend"] == "local"
    assert recorded.steps and all(s["reply"] for s in recorded.steps)
    w, h = recorded.steps[0]["frame"]["model_size"]
    assert w % 28 == 0 and h % 28 == 0 and w * h <= max_pixels  # factor 28


def test_prefix_reuse_equals_full_recompute(setup):
    """A second agent step (reply + new screenshot appended) prefills only the suffix and
    encodes only the new image, with the same logits as a cold run (no DeepStack here)."""
    from tests.vlm_parity_checks import noise_image

    engine, _, _ = setup
    engine.reset()
    first = messages()
    r1 = engine.chat(first, max_new_tokens=6)
    second = first + [
        {"role": "assistant", "content": r1.text},
        {"role": "user", "content": [{"type": "image", "image": noise_image(196, 140, 3)},
                                     {"type": "text", "text": "And now?"}]},
    ]
    engine.chat(second, max_new_tokens=1)
    assert engine.last_stats["images_encoded"] == 1
    assert engine.last_stats["reused_tokens"] >= len(engine.processor(first).input_ids)
    reused = engine.last_logits.clone()
    engine.reset()
    engine._vision.clear()
    engine.chat(second, max_new_tokens=1)
    assert engine.last_stats["reused_tokens"] == 0 and engine.last_stats["images_encoded"] == 3
    torch.testing.assert_close(reused, engine.last_logits, atol=TOL, rtol=0)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda v: v.update(window_size=100), r"window_size \(100\) must be a multiple of"),
    (lambda v: v.update(fullatt_block_indexes=[1, 4]), "fullatt_block_indexes has 4"),
])
def test_bad_vision_config_is_named(edit, message):
    from vlm.config import ConfigError, ModelConfig

    folder, _ = tiny_family_checkpoint("qwen2_5_vl", "published")
    raw = json.loads((folder / "config.json").read_text())
    edit(raw["vision_config"])
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(raw)


def test_vision_activation_must_match_the_family():
    from vlm.config import ConfigError, ModelConfig

    folder, _ = tiny_family_checkpoint("qwen2_5_vl", "published")
    raw = json.loads((folder / "config.json").read_text())
    raw["vision_config"]["hidden_act"] = "quick_gelu"  # Qwen2-VL's, not this family's
    with pytest.raises(ConfigError, match="hidden_act 'quick_gelu' is not supported for "
                                          "Qwen2_5_VLForConditionalGeneration"):
        ModelConfig.from_dict(raw)


def test_preprocessor_patch_size_contradicting_the_model_is_refused(tmp_path):
    import shutil

    from vlm.processor import Processor

    folder, _ = tiny_family_checkpoint("qwen2_5_vl", "published")
    ck = tmp_path / "ckpt"
    shutil.copytree(folder, ck)
    pre = json.loads((ck / "preprocessor_config.json").read_text())
    pre["patch_size"] = 16  # a Qwen3-VL preprocessor beside a Qwen2.5-VL model
    (ck / "preprocessor_config.json").write_text(json.dumps(pre))
    with pytest.raises(ValueError, match="patch_size 16 contradicts the model's config.json"):
        vlm.load(ck, device="cpu")
    assert isinstance(vlm.load(folder, device="cpu").processor, Processor)
