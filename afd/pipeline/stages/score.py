"""Stage `score`: a scorer's value for every row of a sample set, or of the held-out
demonstrations.

Scores are cached like any artifact, so a golden reward model or a reward model scores each
pool once per sweep, whatever n each job asks for. Over several devices (`shards` > 1: the
tasks of a multi-task job, or one process per GPU of one node) each scores a contiguous shard
of the rows on its own device and the job joins them (afd/runtime/sharding.py); scores do not
depend on the split, so `shards` is not in the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from afd.core.artifacts import read_samples, read_scored_ids, read_scores, write_scores
from afd.core.config import fingerprint, qualified_name
from afd.core.errors import AfdError
from afd.models.scoring import load_scorer
from afd.runtime.sharding import contiguous_shard, shard_folder
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
    shards: int = 1  # devices (tasks, or processes of one node) that score a shard each

    @property
    def reads(self) -> tuple[str, ...]:
        return ("gold",) if self.scorer == "gold" else ()

    def fingerprint(self) -> dict:
        """Its fields but `shards`: a split over tasks changes no score."""
        fields = {k: fingerprint(getattr(self, k)) for k in ("rows", "scorer", "num_prompts")}
        return {"_target_": qualified_name(self), **fields}

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        rows = self._rows(inputs)
        scores = self._score(ctx, inputs, rows)
        write_scores(out_dir, [r["id"] for r in rows], scores)
        return {"mean": float(scores.mean()), "rows": len(rows)}

    def build_shard(self, shard_dir: Path, ctx, inputs: dict[str, Path], shard: int) -> None:
        _, part = contiguous_shard(self._rows(inputs), shard, self.shards)
        scores = self._score(ctx, inputs, part) if part else np.zeros(0)
        shard_folder(shard_dir, shard).mkdir()
        write_scores(shard_folder(shard_dir, shard), [r["id"] for r in part], scores)

    def gather(self, out_dir: Path, shard_dir: Path) -> dict:
        parts = [shard_folder(shard_dir, i) for i in range(self.shards)]
        ids = [row for part in parts for row in read_scored_ids(part)]
        scores = np.concatenate([read_scores(part) for part in parts])
        write_scores(out_dir, ids, scores)
        return {"mean": float(scores.mean()), "rows": len(ids), "shards": self.shards}

    def _rows(self, inputs: dict[str, Path]) -> list[dict]:
        if self.rows == "samples":
            return read_samples(inputs["rows"])
        return demo_rows(inputs["rows"], self.num_prompts)

    def _score(self, ctx, inputs: dict[str, Path], rows: list[dict]) -> np.ndarray:
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
        return scores
