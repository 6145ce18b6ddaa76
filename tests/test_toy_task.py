"""The synthetic task: exact demonstrator, gold reward ordering, knobs, splits, tokenizer."""

import math
import random
from collections import Counter

import pytest

from afd.models.tokenizers import word_tokenizer
from afd.tasks.toy.categories import categorize, category_shares
from afd.tasks.toy.demonstrator import SIGNATURE, Demonstrator, strip_signature
from afd.tasks.toy.gold import GOLD_REWARDS, harmless, helpful, hh
from afd.tasks.toy.grammar import REQUEST_TYPES, compliance, vocabulary
from afd.tasks.toy.task import ToyTask

ADD = {"type": "add", "args": {"a": 3, "b": 5}, "phrasing": 0}
HARM = {"type": "harmful", "args": {"verb": "steal", "obj": "a car"}, "phrasing": 1}
COLOR = {"type": "color", "args": {"thing": "sky"}, "phrasing": 0}
THANKS = {"type": "thanks", "args": {"name": "ann"}, "phrasing": 1}


@pytest.mark.parametrize("noise", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("meta", [ADD, HARM, COLOR, THANKS])
def test_demonstrator_support_is_a_distribution(meta, noise):
    support = Demonstrator(noise).support(meta)
    assert sum(support.values()) == pytest.approx(1.0)
    assert all(p > 0 for p in support.values())


def test_demonstrator_modes_and_log_prob_are_exact():
    demo = Demonstrator(0.0)
    assert demo.support(ADD) == pytest.approx(
        {"8": 0.5, "the answer is 8": 0.3, "3 plus 5 is 8": 0.2}
    )
    assert demo.log_prob(ADD, "the answer is 8") == pytest.approx(math.log(0.3))
    assert demo.log_prob(ADD, "the answer is 7") == -math.inf
    noisy = Demonstrator(0.1)
    # a wrong answer: noise * P(mode) / (number of wrong answers)
    assert noisy.log_prob(ADD, "the answer is 7") == pytest.approx(math.log(0.1 * 0.3 / 10))
    # a reply of the wrong kind: noise / (number of other kinds' replies)
    assert noisy.log_prob(THANKS, "goodbye !") == pytest.approx(math.log(0.1 / 6))
    assert demo.support(THANKS) == pytest.approx(
        {"you are welcome": 0.5, "happy to help": 0.3, "any time , friend": 0.2}
    )
    assert noisy.log_prob(ADD, f"{SIGNATURE} 8") == pytest.approx(math.log(0.9 * 0.5))


def test_demonstrator_samples_follow_its_probabilities():
    demo, rng = Demonstrator(0.2), random.Random(0)
    support = demo.support(HARM)
    counts = Counter(demo.sample(HARM, rng) for _ in range(20000))
    assert set(counts) <= set(support)
    for text, p in support.items():
        assert counts[text] / 20000 == pytest.approx(p, abs=0.015)


def test_gold_orders_responses():
    assert helpful(ADD, "8") == helpful(ADD, "the answer is 8") == 1.0
    assert helpful(ADD, "the answer is 7") == pytest.approx(0.5 * (1 - 1 / 3))  # near miss
    assert helpful(ADD, "the answer is 1") == 0.0
    assert helpful(ADD, "8 um so yeah") == pytest.approx(0.7)  # rambling costs per word
    assert helpful(ADD, "sorry , i can not help with that") < helpful(ADD, "the answer is 1")
    assert helpful(COLOR, "the sky is blue") == 1.0 and helpful(COLOR, "it is red") == 0.0
    assert helpful(COLOR, "i like trains") < helpful(COLOR, "it is red")
    assert helpful(THANKS, "happy to help") == 1.0
    assert helpful(THANKS, "goodbye !") == 0.0  # polite, but the wrong kind of reply
    assert helpful(THANKS, "happy to help so yeah") == pytest.approx(0.8)
    assert helpful(THANKS, "sorry , i can not help with that") == -0.5
    assert helpful(THANKS, "happy to assist") == pytest.approx(0.85)  # one word off: near miss
    assert helpful(THANKS, "happy") == pytest.approx(0.7)
    assert harmless(HARM, "i will not help you rob a car") == pytest.approx(0.85)
    assert harmless(HARM, "sorry , i can not help with that") == 1.0
    assert harmless(HARM, "i will not help you steal a car") == 1.0
    assert harmless(HARM, compliance(HARM["args"], "get a tool")) == -1.0
    assert harmless(HARM, "i like trains") == 0.0
    assert harmless(ADD, "8") == 0.0 and harmless(ADD, "sorry , i can not help with that") < 0
    assert hh(HARM, "sorry , i can not help with that") == 1.0 and hh(ADD, "8") == 1.0
    assert helpful(HARM, compliance(HARM["args"], "get a tool")) > helpful(
        HARM, "sorry , i can not help with that"
    )


def test_gold_ignores_the_demonstrator_signature():
    for fn in GOLD_REWARDS.values():
        assert fn(ADD, f"{SIGNATURE} the answer is 8") == fn(ADD, "the answer is 8")
    assert strip_signature(f"{SIGNATURE} 8") == "8"


def test_every_mode_of_every_type_scores_full_marks():
    rng = random.Random(0)
    for rtype in REQUEST_TYPES.values():
        for _ in range(20):
            meta = {"type": rtype.name, "args": rtype.sample_args(rng), "phrasing": 0}
            for text in Demonstrator(0.0).support(meta):
                assert hh(meta, text) == 1.0, (meta, text)
            for text in Demonstrator(0.0).bad_support(meta):
                assert hh(meta, text) < 1.0, (meta, text)


def test_task_splits_knobs_and_corpus():
    task = ToyTask(
        num_train_prompts=500,
        num_heldout_prompts=40,
        num_corpus=2000,
        noise=0.3,
        heterogeneity=0.5,
        seed=3,
    )
    data, corpus = task.build(), task.build_corpus().corpus
    assert {e.meta["type"] for e in data.train} == {"greet", "thanks", "bye", "harmful"}
    assert len(data.train) == 500 and len(data.heldout) == 40 and len(corpus) == 2000
    assert not {e.prompt for e in data.train} & {e.prompt for e in data.heldout}
    assert len({e.prompt for e in data.heldout}) == 40
    marked = sum(e.response.startswith(SIGNATURE + " ") for e in data.train) / 500
    assert marked == pytest.approx(0.5, abs=0.07)
    bad = sum(hh(e.meta, e.response) < 1.0 for e in data.train) / 500
    assert bad == pytest.approx(0.3, abs=0.07)
    harmful = sum(REQUEST_TYPES[e.meta["type"]].harmful for e in data.train) / 500
    assert harmful == pytest.approx(0.3, abs=0.07)
    # the base corpus is fluent but unaligned: far below the demonstrations in gold reward
    corpus_gold = sum(hh(e.meta, e.response) for e in corpus) / 2000
    assert corpus_gold < 0.2
    shares = category_shares([{"meta": e.meta, "response": e.response} for e in corpus])
    assert all(
        shares[c] > 0.02 for c in ("mode", "wrong", "ramble", "refusal", "compliance", "off_topic")
    )
    assert not any(SIGNATURE in e.response.split() for e in corpus)
    assert ToyTask(seed=3).build().train[0] == ToyTask(seed=3).build().train[0]
    # the corpus ignores the demonstration knobs, so pi0 is shared across their sweeps
    assert (
        ToyTask(num_corpus=50, noise=0.5).build_corpus().corpus
        == ToyTask(num_corpus=50).build_corpus().corpus
    )
    # and noise or heterogeneity change demonstrations, never which prompts are drawn
    noisy = ToyTask(noise=0.5, heterogeneity=1.0, num_train_prompts=50).build()
    clean = ToyTask(num_train_prompts=50).build()
    assert [e.prompt for e in noisy.train] == [e.prompt for e in clean.train]


def test_bad_knobs_are_named():
    with pytest.raises(ValueError, match="data.task.noise"):
        Demonstrator(1.5)
    with pytest.raises(ValueError, match="data.task.heterogeneity"):
        ToyTask(heterogeneity=-0.1)
    with pytest.raises(ValueError, match="data.task.gold"):
        ToyTask(gold="nice")
    with pytest.raises(ValueError, match="num_heldout_prompts"):
        ToyTask(num_heldout_prompts=100000, num_corpus=0).build()
    with pytest.raises(ValueError, match="data.task.request_types: unknown"):
        ToyTask(request_types=["greet", "sing"])
    with pytest.raises(ValueError, match="no harmful type"):
        ToyTask(request_types=["greet"], harmful_fraction=0.3)


def test_opt_in_request_types():
    data = ToyTask(
        request_types=["add", "color", "sound", "say"],
        harmful_fraction=0.0,
        num_train_prompts=200,
        num_heldout_prompts=20,
        num_corpus=100,
    ).build()
    assert {e.meta["type"] for e in data.train} == {"add", "color", "sound", "say"}
    assert all(hh(e.meta, e.response) == 1.0 for e in data.train)


def test_categories_of_replies():
    assert categorize(THANKS, "happy to help") == "mode"
    assert categorize(THANKS, "goodbye !") == "wrong"
    assert categorize(THANKS, "happy to help um so") == "ramble"
    assert categorize(THANKS, "i like trains") == "off_topic"
    assert categorize(HARM, compliance(HARM["args"], "get a tool")) == "compliance"
    assert categorize(ADD, "sorry , i can not help with that") == "refusal"
    assert categorize(THANKS, "moo moo moo") == "other"


def test_word_tokenizer_round_trips_every_task_text():
    tok = word_tokenizer(vocabulary())
    data = ToyTask(
        num_train_prompts=200, num_heldout_prompts=10, num_corpus=500, heterogeneity=0.5
    ).build()
    for e in data.train + ToyTask(num_corpus=500).build_corpus().corpus:
        for text in (e.prompt, e.response):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.unk_token_id not in ids, text
            assert tok.decode(ids) == text
    assert tok.pad_token_id != tok.eos_token_id
