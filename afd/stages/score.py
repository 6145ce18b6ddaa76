"""Stage `score`: a scorer's value for every row of a sample set (or of demonstrations).

Scores are cached like any artifact, so a golden reward model or a reward model scores
each pool once per sweep, whatever n each job asks for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SCORES = "scores.json"


def build(out_dir: Path, rows: list[dict], scorer) -> dict:
    scores = np.asarray(scorer.score(rows), dtype=float)
    if scores.shape != (len(rows),):
        raise ValueError(
            f"scorer {type(scorer).__name__} returned shape {scores.shape} for {len(rows)} rows"
        )
    (out_dir / SCORES).write_text(
        json.dumps({"ids": [r["id"] for r in rows], "scores": scores.tolist()})
    )
    return {"mean": float(scores.mean()), "rows": len(rows)}


def read_scores(path: Path) -> np.ndarray:
    return np.array(json.loads((Path(path) / SCORES).read_text())["scores"], dtype=float)
