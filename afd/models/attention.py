"""Grouped-query attention that stays grouped under a padding mask.

Transformers' SDPA attention copies each key/value head to every query head of its group
(`repeat_kv`) whenever a mask is given, because CUDA's fused kernels take grouped heads only
without one. A batch of left-padded prompts always has a mask, so on CPU each decoding step
of a grouped-query model (Llama, SmolLM2, Gemma) copied its whole KV cache several times over:
13x slower attention for SmolLM2 (9 query heads on 3 key/value heads) than torch's own
grouped SDPA, which takes a mask on CPU. `grouped_attention(model)` swaps the model's SDPA
attention for `grouped_sdpa` while a block runs; the numbers are the same (tested).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "afd_grouped_sdpa"


def grouped_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Transformers' `sdpa` attention, except that grouped heads under a mask on CPU go to
    torch's SDPA with `enable_gqa` instead of being copied out."""
    groups = getattr(module, "num_key_value_groups", 1)
    plain = (
        groups == 1
        or attention_mask is None
        or query.device.type != "cpu"
        or kwargs.get("position_bias") is not None
        or kwargs.get("cache") is not None
    )
    if plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)


@contextmanager
def grouped_attention(model):
    """The model's attention as `grouped_sdpa` while the block runs (a model on `sdpa` only;
    any other implementation is left as it is)."""
    current = getattr(model.config, "_attn_implementation", None)
    if current != "sdpa":
        yield model
        return
    model.set_attn_implementation(NAME)
    try:
        yield model
    finally:
        model.set_attn_implementation(current)
