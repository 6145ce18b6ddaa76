"""From raw demonstrations, held-out rows and preference pairs to a real-text task's splits.

Shared by HH-RLHF (`afd/tasks/hh.py`) and user JSONL files (`afd/tasks/jsonl.py`). Held-out
prompts are unique; when no held-out split is given they are chosen by a hash of the
prompt text (stable under reordering or growing the file); no prompt of the held-out split
is ever trained on; subsets are drawn with a seed and keep file order.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from afd.core.errors import DataError
from afd.tasks.records import Example, Pair, TaskData


def hash_fraction(text: str) -> float:
    """A number in [0, 1) fixed by the text alone."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:13], 16) / 16**13


def dedup(rows: list) -> list:
    """First row of each prompt, in order."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        if row.prompt not in seen:
            seen.add(row.prompt)
            kept.append(row)
    return kept


def subset(rows: list, count: int | None, seed: int) -> list:
    """`count` rows drawn with `seed`, in their original order (all rows if count is None)."""
    if count is None or count >= len(rows):
        return rows
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), count))]


@dataclass
class SplitSpec:
    """How many rows each split keeps, and how the held-out split is made."""

    num_train_prompts: int | None = None
    num_heldout_prompts: int | None = None
    num_pairs: int | None = None
    heldout_fraction: float = 0.05
    dedup_prompts: bool = True
    seed: int = 0

    def check(self) -> None:
        for key in ("num_train_prompts", "num_heldout_prompts", "num_pairs"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"data.task.{key} must be null or an integer >= 1, got {value!r}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(
                f"data.task.heldout_fraction must be in (0, 1), got {self.heldout_fraction}"
            )


def assemble(
    train: list[Example],
    heldout: list[Example] | None,
    pairs: list[Pair],
    spec: SplitSpec,
    info: dict,
) -> TaskData:
    """Build the splits; `heldout=None` holds out `heldout_fraction` of the train prompts."""
    stats: dict[str, int] = {}
    if heldout is None:
        held = {e.prompt for e in train if hash_fraction(e.prompt) < spec.heldout_fraction}
        heldout = [e for e in train if e.prompt in held]
    held_prompts = {e.prompt for e in heldout}
    stats["train_rows_on_heldout_prompts"] = sum(e.prompt in held_prompts for e in train)
    train = [e for e in train if e.prompt not in held_prompts]
    stats["pairs_on_heldout_prompts"] = sum(p.prompt in held_prompts for p in pairs)
    pairs = [p for p in pairs if p.prompt not in held_prompts]
    if spec.dedup_prompts:
        before = len(train)
        train = dedup(train)
        stats["train_duplicate_prompts"] = before - len(train)
    heldout = subset(dedup(heldout), spec.num_heldout_prompts, spec.seed)
    train = subset(train, spec.num_train_prompts, spec.seed)
    pairs = subset(pairs, spec.num_pairs, spec.seed)
    if not train:
        raise DataError(
            f"{info.get('name')}: no training demonstrations left (every prompt is held out "
            "or the source is empty); check data.task.heldout_fraction and the files"
        )
    if not heldout:
        raise DataError(
            f"{info.get('name')}: no held-out prompts; raise data.task.heldout_fraction "
            "or give a held-out split"
        )
    stats.update(train=len(train), heldout=len(heldout), pairs=len(pairs))
    return TaskData(train=train, heldout=heldout, pairs=pairs, info={**info, "counts": stats})
