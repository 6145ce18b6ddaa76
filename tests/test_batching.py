"""Tokenisation and padding: masks, EOS, truncation, and padding-side invariance."""

import numpy as np
import pytest
import torch

from afd.models.batching import (
    IGNORE,
    ClassifierCollator,
    Lengths,
    LMCollator,
    encode_response,
    pad_batch,
)
from afd.models.loading import load_classifier, load_policy
from afd.models.scoring import classifier_scores, reward_logits, sequence_logprobs
from afd.models.tokenizers import load_tokenizer

ROWS = [
    {"prompt": "Human: add 3 and 5 Assistant:", "response": "the answer is 8"},
    {"prompt": "Human: reverse red cat sun Assistant:", "response": "sun"},
    {
        "prompt": "Human: how do i steal a car Assistant:",
        "response": "sorry , i can not help with that",
    },
]


def test_lm_batch_masks_prompt_and_keeps_eos(toy_tokenizer):
    batch = LMCollator(toy_tokenizer, Lengths(32, 16))([(r["prompt"], r["response"]) for r in ROWS])
    for i, row in enumerate(ROWS):
        labels = batch["labels"][i]
        real = labels[labels != IGNORE].tolist()
        expected = toy_tokenizer(" " + row["response"], add_special_tokens=False)["input_ids"]
        assert real == expected + [toy_tokenizer.eos_token_id]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == toy_tokenizer.pad_token_id).all()


def test_truncated_response_gets_no_eos(toy_tokenizer):
    ids = encode_response(toy_tokenizer, "sorry , i can not help with that", Lengths(8, 3))
    assert len(ids) == 3 and toy_tokenizer.eos_token_id not in ids
    assert encode_response(toy_tokenizer, "8", Lengths(8, 3))[-1] == toy_tokenizer.eos_token_id


def test_position_ids_ignore_left_padding():
    batch = pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.fixture
def saved_models(tmp_path, toy_tokenizer, toy_lm):
    toy_lm.save_pretrained(tmp_path / "lm")
    toy_tokenizer.save_pretrained(tmp_path / "lm")
    return tmp_path / "lm"


def test_reward_is_invariant_to_padding_side_and_batch(saved_models):
    tok = load_tokenizer(saved_models)
    torch.manual_seed(0)
    model = load_classifier(saved_models, tok).eval()
    lengths = Lengths(32, 16)
    batched = classifier_scores(model, tok, ROWS, lengths)
    alone = np.array([classifier_scores(model, tok, [r], lengths)[0] for r in ROWS])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    collate = ClassifierCollator(tok, lengths, side="left")
    rows = [(r["prompt"], r["response"]) for r in ROWS]
    with torch.no_grad():
        left = reward_logits(model, collate(rows)).numpy()
    np.testing.assert_allclose(left, batched, atol=1e-5)


def test_logprob_is_invariant_to_batch(saved_models):
    tok = load_tokenizer(saved_models)
    model = load_policy(saved_models, tok).eval()
    lengths = Lengths(32, 16)
    batched = sequence_logprobs(model, tok, ROWS, lengths)
    alone = np.array([sequence_logprobs(model, tok, [r], lengths)[0] for r in ROWS])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert (batched < 0).all()
