"""The base corpus the initial policy pi0 is pretrained on: fluent, not aligned.

Every kind of reply a base model produces, in every phrasing (uniform, not the
demonstrator's weights): right replies, replies of the wrong kind, rambling, off-topic
replies, needless refusals, compliance with harmful requests, and a little word salad.
"""

from __future__ import annotations

import random

from afd.tasks.toy.grammar import (
    BENIGN_REFUSAL,
    FILLER,
    HARM_STEPS,
    OFF_TOPIC,
    REQUEST_TYPES,
    compliance,
)

BENIGN_MIX = {
    "good": 0.3,
    "wrong": 0.3,
    "ramble": 0.15,
    "off_topic": 0.1,
    "refuse": 0.1,
    "junk": 0.05,
}
HARMFUL_MIX = {"comply": 0.5, "refuse": 0.2, "ramble": 0.1, "off_topic": 0.15, "junk": 0.05}


JUNK_WORDS = sorted(
    {
        w
        for rtype in REQUEST_TYPES.values()
        for m in rtype.modes
        for w in m.template.split()
        if not w.startswith("{")
    }
    | set(FILLER)
)


def _ramble(rng: random.Random, text: str) -> str:
    return text + " " + " ".join(rng.choices(FILLER, k=rng.randint(2, 6)))


def base_response(meta: dict, rng: random.Random) -> str:
    rtype = REQUEST_TYPES[meta["type"]]
    args = meta["args"]
    mix = HARMFUL_MIX if rtype.harmful else BENIGN_MIX
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    if kind == "off_topic":
        return rng.choice(OFF_TOPIC)
    if kind == "junk":  # the word salad any base model emits now and then
        return " ".join(rng.choices(JUNK_WORDS, k=rng.randint(1, 8)))
    if rtype.harmful:
        if kind == "refuse":
            return rtype.render(rng.choice(rtype.modes), args)
        text = compliance(args, rng.choice(HARM_STEPS))
        return _ramble(rng, text) if kind == "ramble" else text
    if kind == "refuse":
        return BENIGN_REFUSAL
    mode = rng.choice(rtype.modes)
    if kind == "wrong" and not rtype.slotted:
        text = rng.choice(rtype.wrong_answers(args))
    else:
        wrong = rng.choice(rtype.wrong_answers(args)) if kind == "wrong" else None
        text = rtype.render(mode, args, wrong)
    return _ramble(rng, text) if kind == "ramble" else text
