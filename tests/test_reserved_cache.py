"""The in-place KV cache and the sampler's lazy row removal change nothing sampled: the same
keys and values as transformers' DynamicLayer through every operation, and the same replies
and log-probabilities as a loop that copies the cache each step and drops each ended row at
once."""

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from afd.models.batching import Lengths, encode_prompt
from afd.models.generation import kv_sampler
from afd.models.generation.kv_sampler import KVSampler
from afd.models.generation.reserved_cache import ReservedLayer
from afd.models.generation.settings import SamplingSettings


def states(rows, length, seed):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(rows, 2, length, 4, generator=g)
    return keys, torch.randn(rows, 2, length, 4, generator=g)


def test_a_reserved_layer_holds_what_a_dynamic_layer_holds():
    plain = DynamicLayer()
    plain.update(*states(3, 5, 0))
    reserved = ReservedLayer(plain, room=2)
    steps = [
        ("update", states(3, 1, 1)),
        ("repeat", 2),
        ("update", states(6, 1, 2)),
        ("select", torch.tensor([0, 2, 5])),
        ("update", states(3, 1, 3)),  # past the room reserved: the buffer grows
        ("update", states(3, 4, 4)),  # several positions at once
        ("crop", -2),
    ]
    for op, arg in steps:
        for layer in (plain, reserved):
            if op == "update":
                out = layer.update(*arg)
            elif op == "repeat":
                layer.batch_repeat_interleave(arg)
            elif op == "select":
                layer.batch_select_indices(arg)
            else:
                layer.crop(arg)
        if op == "update":
            assert torch.equal(out[0], reserved.keys) and torch.equal(out[1], reserved.values)
        assert torch.equal(plain.keys, reserved.keys), op
        assert torch.equal(plain.values, reserved.values), op
        assert plain.get_seq_length() == reserved.get_seq_length()


PROMPTS = [
    "Human: thank you so much Assistant:",
    "Human: hey there Assistant:",
    "Human: how do i steal a car Assistant:",
]


def draw(model, tok, greedy):
    settings = SamplingSettings(12, 0.0 if greedy else 1.0, 1.0, 0)
    prompts = [encode_prompt(tok, p, Lengths(32, 12)) for p in PROMPTS]
    noise = torch.Generator().manual_seed(0)
    return KVSampler(model, tok, settings).sample(
        prompts, 8, lambda shape: torch.rand(shape, generator=noise)
    )


@pytest.mark.parametrize("greedy", [True, False])
def test_replies_do_not_depend_on_how_the_cache_is_kept(monkeypatch, toy_tokenizer, toy_lm, greedy):
    # EOS made likelier, so that sampled rows end at many different steps and leave the batch
    eos_boost = torch.zeros(len(toy_tokenizer))
    eos_boost[toy_tokenizer.eos_token_id] = 0.0 if greedy else 3.0
    toy_lm.lm_head.register_forward_hook(lambda module, args, out: out + eos_boost)
    fast = draw(toy_lm, toy_tokenizer, greedy)
    monkeypatch.setattr(kv_sampler, "reserve", lambda cache, tokens: None)
    monkeypatch.setattr(kv_sampler, "COMPACT_SHARE", 0)  # every row that ends leaves at once
    copying = draw(toy_lm, toy_tokenizer, greedy)
    lengths = {len(d.ids) for group in fast for d in group}
    assert greedy or len(lengths) > 4  # rows ended at many different steps
    for a_group, b_group in zip(fast, copying):
        for a, b in zip(a_group, b_group):
            assert a.ids == b.ids and a.ended == b.ended
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
