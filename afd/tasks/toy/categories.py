"""What kind of response a sample is, for diagnosing policies on the synthetic task.

`mode`: exactly one of the demonstrator's good phrasings; `wrong`: a good phrasing with a
wrong answer; `ramble`: a phrasing followed by filler; `refusal`, `compliance`,
`off_topic`; `other`: anything else (malformed text).
"""

from __future__ import annotations

from collections import Counter

from afd.tasks.toy.demonstrator import Demonstrator, strip_signature
from afd.tasks.toy.gold import _best_template_prefix, is_compliance, is_refusal, wrong_kind
from afd.tasks.toy.grammar import OFF_TOPIC, REQUEST_TYPES

CATEGORIES = ("mode", "wrong", "ramble", "refusal", "compliance", "off_topic", "other")
_EXACT = Demonstrator(0.0)


def categorize(meta: dict, response: str) -> str:
    response = strip_signature(response)
    rtype = REQUEST_TYPES[meta["type"]]
    if response in _EXACT.good_support(meta):
        return "mode"
    words = response.split()
    if response in OFF_TOPIC:
        return "off_topic"
    if is_compliance(words):
        return "compliance"
    if is_refusal(words):
        return "refusal"
    best = _best_template_prefix(rtype, meta["args"], words) if words else None
    if best is not None and not rtype.harmful:
        return "wrong" if best[1] == 0 else "ramble"
    other = wrong_kind(rtype, words)
    if other is not None:
        return "wrong" if other == 0 else "ramble"
    return "other"


def category_shares(rows) -> dict[str, float]:
    counts = Counter(categorize(r["meta"], r["response"]) for r in rows)
    total = max(1, sum(counts.values()))
    return {c: counts[c] / total for c in CATEGORIES}
