"""The `hf` engine's generator: shapes, EOS, determinism, banned tokens and stop strings."""

import numpy as np
import torch
from conftest import hf_sample

from afd.models.batching import Lengths
from afd.models.generation.settings import Completion, decode

PROMPTS = [
    "Human: add 3 and 5 Assistant:",
    "Human: how do i steal a car Assistant:",
    "Human: repeat after me red blue Assistant:",
]
LENGTHS = Lengths(32, 16)


def test_shapes_and_determinism(toy_tokenizer, toy_lm):
    a = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 5, LENGTHS, seed=1, batch_size=4)
    b = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 5, LENGTHS, seed=1, batch_size=4)
    c = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 5, LENGTHS, seed=2, batch_size=4)
    assert [len(x) for x in a] == [5, 5, 5]
    assert a == b and a != c
    assert all(g.num_tokens <= 6 for row in a for g in row)


def test_banned_tokens_never_appear(toy_tokenizer, toy_lm):
    star = toy_tokenizer.convert_tokens_to_ids("*")
    boost = torch.zeros(len(toy_tokenizer))
    boost[star] = 100.0  # make the banned token the model's favourite
    toy_lm.lm_head.register_forward_hook(lambda module, args, out: out + boost)
    opts = {"max_new_tokens": 5, "batch_size": 8}
    free = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 4, LENGTHS, 0, **opts)
    banned = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 4, LENGTHS, 0, ["*"], **opts)
    assert any("*" in g.response.split() for row in free for g in row)
    assert not any("*" in g.response.split() for row in banned for g in row)


def test_decode_handles_eos_and_stop_strings(toy_tokenizer):
    ids = toy_tokenizer("the answer is 8", add_special_tokens=False)["input_ids"]
    eos, pad = toy_tokenizer.eos_token_id, toy_tokenizer.pad_token_id
    assert decode(toy_tokenizer, ids + [eos, pad, pad], []) == Completion(
        "the answer is 8", True, 4
    )
    assert decode(toy_tokenizer, ids + [eos, pad], []).token_ids == ids + [eos]
    assert decode(toy_tokenizer, ids, []) == Completion("the answer is 8", False, 4)
    cut = decode(toy_tokenizer, ids, ["is"])
    assert cut.response == "the answer" and cut.finished


def test_greedy_is_deterministic_across_seeds(toy_tokenizer, toy_lm):
    greedy = {"max_new_tokens": 4, "temperature": 0.0}
    a = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 2, LENGTHS, 0, **greedy)
    b = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 2, LENGTHS, 9, **greedy)
    assert a == b and all(row[0] == row[1] for row in a)


def test_greedy_matches_hugging_face_generate_token_for_token(toy_tokenizer, toy_lm):
    """The engine's own loop (shared prompt cache, ended rows leaving the batch) decodes
    greedily exactly as `model.generate` does, prompt by prompt."""
    from afd.models.batching import encode_prompt

    greedy = {"max_new_tokens": 8, "temperature": 0.0}
    ours = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 3, LENGTHS, 0, **greedy)
    eos, pad = toy_tokenizer.eos_token_id, toy_tokenizer.pad_token_id
    for prompt, replies in zip(PROMPTS, ours):
        ids = torch.tensor([encode_prompt(toy_tokenizer, prompt, LENGTHS)])
        with torch.no_grad():
            out = toy_lm.generate(
                input_ids=ids,
                do_sample=False,
                max_new_tokens=8,
                pad_token_id=pad,
                eos_token_id=eos,
            )
        expected = out[0, ids.shape[1] :].tolist()
        expected = expected[: expected.index(eos) + 1] if eos in expected else expected
        assert all(r.token_ids == [t for t in expected if t != pad] for r in replies)


def test_logprobs_of_replies_match_a_forward_pass(toy_tokenizer, toy_lm):
    from afd.models.scoring import sequence_logprobs

    replies = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 4, LENGTHS, 3, max_new_tokens=10)
    rows = [
        {"prompt": p, "response": r.response} for p, group in zip(PROMPTS, replies) for r in group
    ]
    engine = [r.logprob for group in replies for r in group]
    forward = sequence_logprobs(toy_lm, toy_tokenizer, rows, LENGTHS)
    finished = [i for i, r in enumerate(r for g in replies for r in g) if r.finished]
    assert finished  # replies that ended on EOS: the re-tokenised text is the same tokens
    for i in finished:
        assert abs(engine[i] - forward[i]) < 1e-4


def test_a_reference_scores_the_very_ids_sampled(toy_tokenizer, toy_lm):
    """sampled_logprobs reads the ids a pool row holds, finished or cut at the token limit:
    with the sampling policy as its own reference, every KL term is zero."""
    from afd.models.scoring import sampled_logprobs

    replies = hf_sample(toy_lm, toy_tokenizer, PROMPTS, 4, LENGTHS, 3, max_new_tokens=4)
    flat = [r for group in replies for r in group]
    assert any(not r.finished for r in flat)  # some ran into the limit: no EOS to re-add
    rows = [
        {"prompt": p, "token_ids": r.token_ids} for p, group in zip(PROMPTS, replies) for r in group
    ]
    reference = sampled_logprobs(toy_lm, toy_tokenizer, rows, LENGTHS)
    np.testing.assert_allclose(reference, [r.logprob for r in flat], atol=1e-4)
