"""Grouped-query attention under a padding mask: the same numbers as transformers' SDPA,
without copying key/value heads out (afd/models/attention.py)."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from afd.models.attention import NAME, grouped_attention


def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # two query heads per key/value head
        max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).eval()


def left_padded_batch():
    ids = torch.randint(3, 64, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    mask[1, :7] = 0
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, position


def test_grouped_attention_matches_sdpa_under_a_padding_mask_and_with_a_cache():
    model = tiny_llama()
    ids, mask, position = left_padded_batch()
    step = torch.randint(3, 64, (3, 1))
    longer = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)

    def run():
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True)
            nxt = model(
                input_ids=step,
                attention_mask=longer,
                position_ids=position[:, -1:] + 1,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        return out.logits, nxt.logits

    plain = run()
    with grouped_attention(model):
        assert model.config._attn_implementation == NAME
        grouped = run()
    assert model.config._attn_implementation == "sdpa"
    real = mask.bool()
    assert torch.allclose(plain[0][real], grouped[0][real], atol=1e-5)
    assert torch.allclose(plain[1], grouped[1], atol=1e-5)


def test_a_model_on_another_attention_is_left_alone():
    model = tiny_llama()
    model.set_attn_implementation("eager")
    with grouped_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "eager"
