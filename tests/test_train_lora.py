"""LoRA through peft: the default targets, and an adapter that transformers + peft load for
the base checkpoint with the same logits as DIR/merged loaded by transformers and by vlm."""

from __future__ import annotations

import json

import pytest
import torch

from tests.tiny_checkpoints import tiny_checkpoint, tiny_family_checkpoint
from tests.train_fixtures import load_ours, make_sample
from tests.vlm_parity_checks import full_frames
from train import lora as L
from train.merged import save_merged
from train.pack import pack_row
from vlm.train_forward import packed_hidden

TOL = 1e-3


def test_default_targets_are_attention_and_dense_mlps_not_experts_or_vision():
    folder, _ = tiny_checkpoint()
    model, _, _ = load_ours(folder)
    names = L.setup_lora(model, L.lora_config(4, 8.0, 0.0, False))
    wrapped = {n.split(".lora_")[0] for n in names}
    assert "language_model.layers.0.self_attn.q_proj" in wrapped
    assert "language_model.layers.2.mlp.down_proj" in wrapped  # the dense layer's MLP
    assert not any("experts" in n or n.startswith("visual.") for n in wrapped)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(names)


class _Engine:
    def __init__(self, cfg):
        self.cfg = cfg


@pytest.mark.parametrize("family", ["qwen3_vl_moe", "qwen2_5_vl"])
def test_adapter_loads_in_peft_and_equals_the_merged_checkpoint(tmp_path, family):
    from peft import PeftModel

    folder, hf = tiny_checkpoint() if family == "qwen3_vl_moe" else \
        tiny_family_checkpoint(family)
    model, cfg, processor = load_ours(folder)
    config = L.lora_config(4, 8.0, 0.0, False, str(folder))
    L.setup_lora(model, config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained-looking adapter (peft starts B at zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    L.save_adapter(model, config, tmp_path / "adapter", False)
    L.merge_lora(model)
    save_merged(model, folder, tmp_path / "merged")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == 4

    sample = make_sample(processor, [(64, 64)], "open it", "Thought: x\nAction: wait()")
    row = pack_row([sample], cfg.image_token_id, cfg.vision.spatial_merge_size)
    ids = torch.tensor([sample.input_ids])
    inputs = dict(input_ids=ids, pixel_values=full_frames(_Engine(cfg), row.pixels),
                  image_grid_thw=torch.tensor(row.grids),
                  mm_token_type_ids=(ids == cfg.image_token_id).int())
    kw = {"attn_implementation": "eager", "dtype": torch.float32}
    if family == "qwen3_vl_moe":
        kw["experts_implementation"] = "eager"
    cls = type(hf)
    with torch.no_grad():
        base = hf(**inputs).logits[0]
        with_adapter = PeftModel.from_pretrained(cls.from_pretrained(folder, **kw),
                                                 tmp_path / "adapter").eval()(**inputs).logits[0]
        merged_hf = cls.from_pretrained(tmp_path / "merged", **kw).eval()(**inputs).logits[0]
        merged_ours, _, _ = load_ours(tmp_path / "merged")
        h, _ = packed_hidden(merged_ours, row.input_ids, row.positions, row.cu_seqlens,
                             row.max_seqlen, row.pixels, row.grids)
        ours = merged_ours.lm_head(h)
    assert (with_adapter - base).abs().max() > 0.1  # the adapter does change the model
    torch.testing.assert_close(with_adapter, merged_hf, atol=TOL, rtol=0)
    torch.testing.assert_close(ours, merged_hf, atol=TOL, rtol=0)
