"""Qwen3.5 configs: the published 35B-A3B shape behind `deskpilot bench step --config
qwen3.5-35b-a3b`, and clear errors for hybrid-decoder fields that cannot run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from vlm.config import ConfigError, ModelConfig

CONFIG = Path(__file__).resolve().parents[1] / "assets" / "configs" / "qwen3.5-35b-a3b.json"


@pytest.fixture(scope="module")
def published() -> dict:
    return json.loads(CONFIG.read_text())


def test_bench_step_offers_the_config(published):
    from vlm.bench import parse_args

    assert parse_args(["--config", "qwen3.5-35b-a3b"]).config == "qwen3.5-35b-a3b"
    cfg = ModelConfig.from_dict(published)
    t = cfg.text
    assert cfg.family == "qwen3_5_moe" and cfg.vision.deepstack_visual_indexes == []
    assert [t.is_linear_layer(i) for i in range(4)] == [True, True, True, False]
    assert sum(t.is_linear_layer(i) for i in range(t.num_hidden_layers)) == 30
    assert (t.rotary_dim, t.num_experts, t.shared_expert_intermediate_size) == (64, 256, 512)


def test_the_35b_a3b_shape_has_35b_parameters(published):
    import torch

    from vlm.model import QwenVL

    with torch.device("meta"):
        model = QwenVL(ModelConfig.from_dict(published))
    total = sum(p.numel() for p in model.parameters())
    assert 35.0e9 < total < 35.2e9


def test_layer_types_come_from_the_interval_when_absent(published):
    d = copy.deepcopy(published)
    del d["text_config"]["layer_types"]
    d["text_config"]["full_attention_interval"] = 2
    t = ModelConfig.from_dict(d).text
    assert [t.is_linear_layer(i) for i in range(4)] == [True, False, True, False]


@pytest.mark.parametrize(("edit", "match"), [
    (lambda t: t.update(layer_types=t["layer_types"][:-1]), "layer_types has 39 entries"),
    (lambda t: t["layer_types"].__setitem__(0, "sliding_attention"), "unknown types"),
    (lambda t: t.update(linear_num_value_heads=24), "multiple of linear_num_key_heads"),
    (lambda t: t["rope_parameters"].update(partial_rotary_factor=0.5),
     "must equal rotary dim/2"),
    (lambda t: t.update(linear_conv_kernel_dim=0), "linear_conv_kernel_dim must be > 0"),
])
def test_bad_hybrid_fields_are_named(published, edit, match):
    d = copy.deepcopy(published)
    edit(d["text_config"])
    with pytest.raises(ConfigError, match=match):
        ModelConfig.from_dict(d)
