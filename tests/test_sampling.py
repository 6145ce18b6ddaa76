"""Batched generation: shapes, EOS, determinism, banned tokens and stop strings."""

import torch

from afd.batching import Lengths
from afd.sampling import Generated, SamplingConfig, _decode, generate

PROMPTS = [
    "Human: add 3 and 5 Assistant:",
    "Human: how do i steal a car Assistant:",
    "Human: repeat after me red blue Assistant:",
]


def test_shapes_and_determinism(toy_tokenizer, toy_lm):
    cfg = SamplingConfig(max_new_tokens=6, batch_size=4)
    a = generate(toy_lm, toy_tokenizer, PROMPTS, 5, cfg, Lengths(32, 16), seed=1, progress=False)
    b = generate(toy_lm, toy_tokenizer, PROMPTS, 5, cfg, Lengths(32, 16), seed=1, progress=False)
    c = generate(toy_lm, toy_tokenizer, PROMPTS, 5, cfg, Lengths(32, 16), seed=2, progress=False)
    assert [len(x) for x in a] == [5, 5, 5]
    assert a == b and a != c
    assert all(g.num_tokens <= 6 for row in a for g in row)


def test_banned_tokens_never_appear(toy_tokenizer, toy_lm):
    star = toy_tokenizer.convert_tokens_to_ids("*")
    boost = torch.zeros(len(toy_tokenizer))
    boost[star] = 100.0  # make the banned token the model's favourite
    toy_lm.lm_head.register_forward_hook(lambda module, args, out: out + boost)
    cfg = SamplingConfig(max_new_tokens=5, batch_size=8)
    free = generate(toy_lm, toy_tokenizer, PROMPTS, 4, cfg, Lengths(32, 16), 0, progress=False)
    banned = generate(
        toy_lm, toy_tokenizer, PROMPTS, 4, cfg, Lengths(32, 16), 0, ["*"], progress=False
    )
    assert any("*" in g.response.split() for row in free for g in row)
    assert not any("*" in g.response.split() for row in banned for g in row)


def test_decode_handles_eos_and_stop_strings(toy_tokenizer):
    ids = toy_tokenizer("the answer is 8", add_special_tokens=False)["input_ids"]
    eos, pad = toy_tokenizer.eos_token_id, toy_tokenizer.pad_token_id
    assert _decode(toy_tokenizer, ids + [eos, pad, pad], []) == Generated(
        "the answer is 8", True, 4
    )
    assert _decode(toy_tokenizer, ids, []) == Generated("the answer is 8", False, 4)
    cut = _decode(toy_tokenizer, ids, ["is"])
    assert cut.response == "the answer" and cut.finished


def test_greedy_is_deterministic_across_seeds(toy_tokenizer, toy_lm):
    cfg = SamplingConfig(max_new_tokens=4, temperature=0.0)
    a = generate(toy_lm, toy_tokenizer, PROMPTS, 2, cfg, Lengths(32, 16), 0, progress=False)
    b = generate(toy_lm, toy_tokenizer, PROMPTS, 2, cfg, Lengths(32, 16), 9, progress=False)
    assert a == b and all(row[0] == row[1] for row in a)
