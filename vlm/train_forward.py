"""A differentiable forward of our model over packed samples, for train/.

The same modules the engine runs (vision tower, decoder layers, lm_head), in training mode:
no KV cache, one flat token stream holding several samples, attention block-diagonal causal
over the samples (`cu_seqlens`; flash-attn's varlen function on GPU when installed, the
PyTorch reference otherwise), MRoPE positions given per token (they restart per sample), and
the images of every sample in one vision call. The MoE layers route exactly as
transformers' do (softmax in fp32 -> top-k -> renormalise) with the routing weights in the
autograd graph; the router logits are returned for the auxiliary load-balancing loss.

Reference for every number: transformers' `Qwen3VLMoeForConditionalGeneration` (and the
Qwen2.5-VL / dense Qwen3-VL classes) forward with `labels` — the parity tests compare loss
and every gradient. The loss is computed only at the target positions (the lm_head runs on
those rows only: most of a GUI-agent sample is prompt), summed in fp32.

Shapes: T tokens of the row, Nv image tokens, H hidden, V vocabulary, E experts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

import kernels
from vlm.layers import run_block
from vlm.text import SparseMoe, mrope_cos_sin, mrope_tables

IGNORE = -100


@dataclass
class PackedOutput:
    loss_sum: torch.Tensor  # () fp32: summed cross entropy over the target tokens
    target_tokens: int
    router_logits: list[torch.Tensor]  # (T, E) per MoE layer (empty for dense models)


def set_gradient_checkpointing(model, enabled: bool) -> None:
    """Recompute every decoder layer and ViT block in the backward pass (non-reentrant)."""
    model.visual.checkpoint_blocks = enabled
    model.language_model.checkpoint_layers = enabled


def moe_forward(moe: SparseMoe, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (T, H) -> (y (T, H), router logits (T, E)), differentiable in x, the router and
    the experts: each used expert's rows, weighted by their routing weight, summed in fp32."""
    logits = F.linear(x, moe.gate.weight)  # (T, E)
    weights, ids = kernels.route(logits, moe.top_k, renormalize=True)  # (T, k) fp32, long
    w_gu, w_down = moe.experts.gate_up_proj, moe.experts.down_proj  # (E, H, 2I), (E, I, H)
    inner = w_down.shape[1]
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in torch.unique(ids).tolist():
        rows, slot = (ids == e).nonzero(as_tuple=True)  # tokens routed to e, and which choice
        gu = x[rows] @ w_gu[e]  # (n, 2I)
        y = (F.silu(gu[:, :inner]) * gu[:, inner:]) @ w_down[e]  # (n, H)
        out = out.index_add(0, rows, y.float() * weights[rows, slot, None])
    return out.to(x.dtype), logits


def _layer(layer, x, cos, sin, cu, max_len):
    """One decoder layer over packed samples -> (x, router logits or None)."""
    h = layer.self_attn(layer.input_layernorm(x), cos, sin, None, layer.index, 0, cu, cu,
                        max_len)
    x = x + h
    h = layer.post_attention_layernorm(x)
    if isinstance(layer.mlp, SparseMoe):
        y, logits = moe_forward(layer.mlp, h)
        return x + y, logits
    return x + layer.mlp(h), None


def packed_hidden(model, input_ids, positions, cu_seqlens, max_seqlen, pixels=None,
                  grids=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Final-normed hidden states (T, H) of a packed row, and the MoE router logits."""
    cfg = model.cfg
    lm = model.language_model
    x = lm.embed_tokens(input_ids)  # (T, H)
    visual_index, deepstack = None, None
    if grids:
        vision_grad = any(p.requires_grad for p in model.visual.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and vision_grad):
            embeds, deepstack = model.visual(pixels, grids)  # (Nv, H), [(Nv, H)] * levels
        visual_index = (input_ids == cfg.image_token_id).nonzero()[:, 0]  # (Nv,)
        if visual_index.shape[0] != embeds.shape[0]:
            raise ValueError(f"{visual_index.shape[0]} image tokens in the row but "
                             f"{embeds.shape[0]} image features")
        x = x.index_copy(0, visual_index, embeds.to(x.dtype))
    inv_freq, axis = mrope_tables(cfg.text, x.device)
    cos, sin = mrope_cos_sin(positions, inv_freq, axis, x.dtype)
    checkpointed = getattr(lm, "checkpoint_layers", False)
    router_logits = []
    for i, layer in enumerate(lm.layers):
        x, logits = run_block(partial(_layer, layer), checkpointed, x, cos, sin, cu_seqlens,
                              max_seqlen)
        if logits is not None:
            router_logits.append(logits)
        if deepstack and i < len(deepstack):
            x = x.index_add(0, visual_index, deepstack[i].to(x.dtype))
    return lm.norm(x), router_logits


def packed_loss(model, input_ids, positions, cu_seqlens, max_seqlen, labels, pixels=None,
                grids=None) -> PackedOutput:
    """Summed next-token cross entropy of a packed row. `labels` (T,) are already the next
    token at each position (shifted within each sample), IGNORE where not trained."""
    h, router_logits = packed_hidden(model, input_ids, positions, cu_seqlens, max_seqlen,
                                     pixels, grids)
    at = (labels != IGNORE).nonzero()[:, 0]  # target positions
    logits = model.lm_head(h[at]).float()  # (targets, V)
    loss = F.cross_entropy(logits, labels[at], reduction="sum")
    return PackedOutput(loss, int(at.shape[0]), router_logits)


def load_balancing_loss(router_logits: list[torch.Tensor], top_k: int) -> torch.Tensor:
    """The Switch-Transformer auxiliary loss as transformers computes it for these models:
    E * sum_e (share of top-k choices that went to e) * (mean router probability of e),
    over every MoE layer's tokens together."""
    logits = torch.cat(router_logits)  # (layers*T, E)
    num_experts = logits.shape[-1]
    probs = torch.softmax(logits.float(), dim=-1)
    _, chosen = torch.topk(probs, top_k, dim=-1)
    mask = F.one_hot(chosen, num_experts).float()  # (N, k, E)
    tokens_per_expert = mask.mean(dim=0)  # (k, E)
    prob_per_expert = probs.mean(dim=0)  # (E,)
    return (tokens_per_expert * prob_per_expert[None]).sum() * num_experts
