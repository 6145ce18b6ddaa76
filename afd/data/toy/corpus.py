"""The base corpus the initial policy pi0 is pretrained on: fluent, not aligned.

Responses of mixed quality: right and wrong answers in every phrasing (with uniform,
not the demonstrator's, phrasing weights), rambling, off-topic replies, needless
refusals, and compliance with harmful requests.
"""

from __future__ import annotations

import random

from afd.data.toy.grammar import (
    BENIGN_REFUSAL,
    FILLER,
    HARM_STEPS,
    OFF_TOPIC,
    REQUEST_TYPES,
    compliance,
)

BENIGN_MIX = {"good": 0.3, "wrong": 0.3, "ramble": 0.2, "off_topic": 0.1, "refuse": 0.1}
HARMFUL_MIX = {"comply": 0.5, "refuse": 0.2, "ramble": 0.1, "off_topic": 0.2}


def _ramble(rng: random.Random, text: str) -> str:
    return text + " " + " ".join(rng.choices(FILLER, k=rng.randint(2, 6)))


def base_response(meta: dict, rng: random.Random) -> str:
    rtype = REQUEST_TYPES[meta["type"]]
    args = meta["args"]
    mix = HARMFUL_MIX if rtype.harmful else BENIGN_MIX
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    if kind == "off_topic":
        return rng.choice(OFF_TOPIC)
    if rtype.harmful:
        if kind == "refuse":
            return rtype.render(rng.choice(rtype.modes), args)
        text = compliance(args, rng.choice(HARM_STEPS))
        return _ramble(rng, text) if kind == "ramble" else text
    if kind == "refuse":
        return BENIGN_REFUSAL
    mode = rng.choice(rtype.modes)
    wrong = kind == "wrong" or (kind == "ramble" and rng.random() < 0.5)
    text = rtype.render(mode, args, rng.choice(rtype.wrong_answers(args)) if wrong else None)
    return _ramble(rng, text) if kind == "ramble" else text
