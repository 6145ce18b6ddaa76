"""Diversity of a policy's replies to one prompt: distinct-n and self-BLEU.

The task-free counterpart of the `div/*` metrics, for real text where no demonstrator is
known: a mode-seeking policy repeats itself (low distinct-n, high self-BLEU). Texts are
split on whitespace.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

SMOOTHING = 0.1  # Chen & Cherry's method 1: a zero n-gram match counts as 0.1


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams of the texts (0 when they hold no n-gram)."""
    grams = [g for t in texts for g in ngrams(t.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(hypothesis: str, references: Sequence[str], max_n: int = 4) -> float:
    """Sentence BLEU with clipped counts over several references, the brevity penalty of
    the closest reference length, uniform weights up to max_n and method-1 smoothing."""
    hyp = hypothesis.split()
    refs = [r.split() for r in references]
    if not hyp or not refs:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = Counter(ngrams(hyp, n))
        total = sum(counts.values())
        if total == 0:  # hypothesis shorter than n: that order counts as a smoothed zero
            log_precision += math.log(SMOOTHING / 1.0)
            continue
        best = Counter()
        for ref in refs:
            for gram, c in Counter(ngrams(ref, n)).items():
                best[gram] = max(best[gram], c)
        matched = sum(min(c, best[g]) for g, c in counts.items())
        log_precision += math.log((matched or SMOOTHING) / total)
    closest = min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
    brevity = 1.0 if len(hyp) > closest else math.exp(1 - closest / len(hyp))
    return brevity * math.exp(log_precision / max_n)


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean BLEU of each text against the others as references (needs two texts or more)."""
    if len(texts) < 2:
        return float("nan")
    texts = list(texts)
    return sum(bleu(t, texts[:i] + texts[i + 1 :], max_n) for i, t in enumerate(texts)) / len(texts)
