"""Stage `score`: a scorer's value for every row of a sample set, or of the held-out
demonstrations.

Scores are cached like any artifact, so a golden reward model or a reward model scores each
pool once per sweep, whatever n each job asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from afd.core.artifacts import read_samples, write_scores
from afd.core.errors import AfdError
from afd.models.scoring import load_scorer
from afd.tasks.data_dir import DataDir
from afd.tasks.judge import judge_scorer


class NonFiniteScores(AfdError):
    """A scorer returned NaN or infinite values."""


def demo_rows(data_dir: Path, num_prompts: int | None) -> list[dict]:
    """The held-out demonstrations as rows a scorer reads."""
    return [
        {"id": e.id, "prompt_id": e.id, "prompt": e.prompt, "response": e.response, "meta": e.meta}
        for e in DataDir(data_dir).examples("heldout", num_prompts)
    ]


@dataclass
class ScoreStage:
    """`rows`: "samples" (input `rows`, a sample artifact) or "demos" (input `rows`, the data
    artifact: its first `num_prompts` held-out demonstrations). `scorer`: "gold" (the job's
    gold judge) or "reward" (input `reward`, a reward artifact)."""

    stage: ClassVar[str] = "score"
    trains: ClassVar[bool] = False

    rows: str
    scorer: str
    num_prompts: int | None = None

    @property
    def reads(self) -> tuple[str, ...]:
        return ("gold",) if self.scorer == "gold" else ()

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        rows = (
            read_samples(inputs["rows"])
            if self.rows == "samples"
            else demo_rows(inputs["rows"], self.num_prompts)
        )
        gold = judge_scorer(ctx.gold.get(), inputs) if self.scorer == "gold" else None
        scorer = gold if gold is not None else load_scorer(inputs["reward"])
        scores = np.asarray(scorer.score(rows), dtype=float)
        if scores.shape != (len(rows),):
            raise ValueError(
                f"scorer {type(scorer).__name__} returned shape {scores.shape} for {len(rows)} rows"
            )
        bad = ~np.isfinite(scores)
        if bad.any():
            first = rows[int(np.argmax(bad))]["id"]
            raise NonFiniteScores(
                f"the {self.scorer} scorer ({type(scorer).__name__}) gave {int(bad.sum())} "
                f"non-finite scores of {len(rows)} rows (first: row {first!r}); a diverged or "
                "broken reward model: nothing of it is used or cached"
            )
        write_scores(out_dir, [r["id"] for r in rows], scores)
        return {"mean": float(scores.mean()), "rows": len(rows)}
