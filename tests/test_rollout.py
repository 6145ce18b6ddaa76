"""On-policy sampling: padding and KV cache against one-prompt runs, the sampling
distribution against the model's softmax, top-k/top-p against Hugging Face's warpers, EOS,
stop strings and banned tokens."""

import torch

from afd.models.batching import Lengths, encode_prompt
from afd.models.generation.kv_sampler import filter_logits
from afd.models.generation.on_policy import OnPolicySampler
from afd.models.generation.settings import SamplingSettings
from afd.objectives.losses import sequence_logprob

PROMPTS = [
    "Human: thank you so much Assistant:",
    "Human: hey there Assistant:",
    "Human: how do i steal a car Assistant:",
]


def sample(model, tok, prompts, n, max_new_tokens, generator, temperature=1.0, banned=(), **kw):
    settings = SamplingSettings(max_new_tokens, temperature, kw.pop("top_p", 1.0), 0, **kw)
    return OnPolicySampler(tok, settings, generator, banned).rollouts(model, prompts, n)


def encode(tokenizer, prompts):
    return [encode_prompt(tokenizer, p, Lengths(32, 16)) for p in prompts]


def test_greedy_batch_with_left_padding_matches_single_prompts(toy_tokenizer, toy_lm):
    ids = encode(toy_tokenizer, PROMPTS)
    assert len({len(i) for i in ids}) > 1  # prompts of different lengths: real padding
    args = dict(max_new_tokens=6, generator=torch.Generator(), temperature=0.0)
    batched = sample(toy_lm, toy_tokenizer, ids, 2, **args)
    for k, p in enumerate(ids):
        alone = sample(toy_lm, toy_tokenizer, [p], 1, **args)
        assert batched.responses[2 * k] == alone.responses[0] == batched.responses[2 * k + 1]
        # greedy means each token is the argmax of the model's next-token distribution
        seq = p + alone.responses[0]
        with torch.no_grad():
            logits = toy_lm(input_ids=torch.tensor([seq])).logits[0]
        for t, token in enumerate(alone.responses[0]):
            assert logits[len(p) + t - 1].argmax().item() == token


def test_samples_follow_the_model_distribution(toy_tokenizer, toy_lm):
    boost = torch.zeros(len(toy_tokenizer))
    favourites = toy_tokenizer.convert_tokens_to_ids(["happy", "you", "sorry"])
    boost[favourites] = torch.tensor([6.0, 5.5, 5.0])
    toy_lm.lm_head.register_forward_hook(lambda module, args, out: out + boost)
    (prompt,) = encode(toy_tokenizer, PROMPTS[:1])
    with torch.no_grad():
        probs = torch.softmax(toy_lm(input_ids=torch.tensor([prompt])).logits[0, -1], -1)
    draws = 6000
    rollouts = sample(toy_lm, toy_tokenizer, [prompt], draws, 1, torch.Generator().manual_seed(0))
    counts = torch.bincount(torch.tensor([r[0] for r in rollouts.responses]), minlength=len(probs))
    for token in favourites:
        p = probs[token].item()
        assert abs(counts[token].item() / draws - p) < 4 * (p * (1 - p) / draws) ** 0.5 + 1e-3


def test_eos_banned_tokens_determinism_and_training_batch(toy_tokenizer, toy_lm):
    eos, pad = toy_tokenizer.eos_token_id, toy_tokenizer.pad_token_id
    star = toy_tokenizer.convert_tokens_to_ids("*")
    ids = encode(toy_tokenizer, PROMPTS)

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return sample(toy_lm, toy_tokenizer, ids, 4, 8, generator, banned=[star])

    a, b, c = run(1), run(1), run(2)
    assert a.responses == b.responses and a.responses != c.responses
    assert a.prompts == [p for p in ids for _ in range(4)]
    for r in a.responses:
        assert star not in r and pad not in r
        assert (r and r[-1] == eos and eos not in r[:-1]) or (len(r) == 8 and eos not in r)
    batch = a.lm_batch(pad)
    with torch.no_grad():
        logits = toy_lm(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        ).logits
    logp = sequence_logprob(logits, batch["labels"])
    # sequence log-probs by brute force, one row at a time without padding
    for i in (0, 5, 11):
        seq = a.prompts[i] + a.responses[i]
        with torch.no_grad():
            row = torch.log_softmax(toy_lm(input_ids=torch.tensor([seq])).logits[0], -1)
        n = len(a.prompts[i])
        expected = sum(row[n + t - 1, tok].item() for t, tok in enumerate(a.responses[i]))
        assert abs(logp[i].item() - expected) < 1e-4


def test_top_k_and_top_p_filter_as_hugging_face_does():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(5, 40, generator=torch.Generator().manual_seed(0)) * 3
    for top_k, top_p in ((0, 0.9), (7, 1.0), (7, 0.5), (1, 1.0), (0, 0.05)):
        expected = logits.clone()
        if top_k:
            expected = TopKLogitsWarper(top_k)(None, expected)
        if top_p < 1:
            expected = TopPLogitsWarper(top_p)(None, expected)
        ours = filter_logits(logits.clone(), top_k, top_p)
        assert torch.equal(torch.isinf(ours), torch.isinf(expected)), (top_k, top_p)


def test_a_stop_string_ends_the_reply_with_eos(toy_tokenizer, toy_lm):
    """A reply that writes a stop string keeps the tokens before it and is closed by EOS, as
    sample sets cut their text there."""
    script = toy_tokenizer("you are welcome Human: thanks", add_special_tokens=False)["input_ids"]
    step = {"n": 0}

    def force(module, args, out):  # the model writes `script`, one token per step
        forced = torch.full_like(out[:, -1], -1e9)
        forced[:, script[min(step["n"], len(script) - 1)]] = 0
        step["n"] += 1
        out[:, -1] = forced
        return out

    toy_lm.lm_head.register_forward_hook(force)
    ids = encode(toy_tokenizer, PROMPTS[:1])
    settings = dict(max_new_tokens=len(script), generator=torch.Generator(), temperature=0.0)
    cut = sample(toy_lm, toy_tokenizer, ids, 1, stop_strings=("Human:",), **settings)
    welcome = toy_tokenizer("you are welcome", add_special_tokens=False)["input_ids"]
    assert cut.responses[0] == welcome + [toy_tokenizer.eos_token_id]
    step["n"] = 0
    free = sample(toy_lm, toy_tokenizer, ids, 1, **settings)
    assert free.responses[0] == script
