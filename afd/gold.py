"""Gold reward scorers, the judges of every result (`conf/gold/*.yaml`).

On the synthetic task the gold reward is programmatic and exact (it reads each row's
`meta`); on real text it is a golden reward model.
"""

from __future__ import annotations

import numpy as np

from afd.data.toy.gold import GOLD_REWARDS


class ToyGold:
    """r*(x, y) of the synthetic task; `kind` = helpful | harmless | hh."""

    def __init__(self, kind: str = "hh"):
        if kind not in GOLD_REWARDS:
            raise ValueError(f"gold.kind must be one of {sorted(GOLD_REWARDS)}, got {kind!r}")
        self.kind = kind
        self.fn = GOLD_REWARDS[kind]

    def score(self, rows) -> np.ndarray:
        missing = [i for i, r in enumerate(rows[:1]) if "type" not in (r.get("meta") or {})]
        if missing:
            raise ValueError("the synthetic gold reward needs each row's meta (request type and "
                             "arguments); these rows do not come from data=toy")
        return np.array([self.fn(r["meta"], r["response"]) for r in rows], dtype=float)
