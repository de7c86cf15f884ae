"""Synthetic pieces for benchmarks and tests: a small Qwen-style tokenizer and random weights.

Benchmarks of real architectures run without downloading anything: the model gets random
weights of a realistic scale, and the prompt is tokenised by a byte-level BPE trained on a
few sentences that carries the Qwen special tokens and a Qwen-style chat template. The
vocabulary size of the model (embedding and lm_head cost) is the architecture's own; only
the special token ids are remapped onto the small tokenizer's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]
# added but not special, as in Qwen's tokenizer: they must survive decoding
PLAIN_ADDED_TOKENS = ["<tool_call>", "</tool_call>"]

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

CORPUS = [
    "Thought: I should click the Settings button. Action: click(start_box='(120,45)')",
    "Describe the screenshot. The window shows a dialog with OK and Cancel buttons.",
    "You are a helpful assistant. Open the browser and search for the weather in Paris.",
    "type(content='hello world') hotkey(key='ctrl c') scroll(direction='down') finished()",
    "Ünïcödé tëxt, emoji 🙂 and 中文字符 so multi-byte tokens exist.",
]


def build_tokenizer(folder: Path, vocab_size: int = 400, corpus: Iterable[str] = CORPUS):
    """Train a byte-level BPE on `corpus`, add the Qwen tokens, save it with the chat
    template. The special tokens come first, so their ids do not depend on the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])
    fast.add_tokens(PLAIN_ADDED_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def special_ids(tok) -> dict[str, int]:
    """The config.json token-id fields for a tokenizer made by build_tokenizer."""
    return {
        "image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tok.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tok.convert_tokens_to_ids("<|vision_end|>"),
    }


def write_preprocessor_config(folder: Path, min_pixels: int, max_pixels: int,
                              family: str = "qwen3_vl") -> None:
    """The image processor settings a checkpoint of `family` ships: Qwen3-VL patch 16 with
    mean = std = 0.5; Qwen2.5-VL ("qwen2_5_vl") patch 14 with CLIP mean/std."""
    if family == "qwen2_5_vl":
        patch, processor = 14, "Qwen2_5_VLProcessor"
        mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    else:
        patch, processor, mean, std = 16, "Qwen3VLProcessor", [0.5] * 3, [0.5] * 3
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessorFast",
        "processor_class": processor,
        "min_pixels": min_pixels, "max_pixels": max_pixels,
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": patch, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": mean, "image_std": std,
    }, indent=2))


def randomize_(model, seed: int = 0) -> None:
    """Fill every parameter in place: norm gains near 1, matrices ~ N(0, 1/fan_in), so
    activations keep a realistic scale through depth (speed does not depend on values, but
    NaNs or degenerate routing would)."""
    import torch

    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif p.dim() == 1:
                p.zero_()
            else:
                fan_in = p.shape[-2] if name.endswith(("gate_up_proj", "down_proj")) and \
                    p.dim() == 3 else p[0].numel()
                p.normal_(0.0, fan_in**-0.5, generator=g)
