"""Stages `data` and `corpus`: a task's splits (and pretraining corpus) as JSONL, so every
later stage reads files.

Rows are validated here (missing, empty or mistyped fields name their file and line), so a
bad dataset fails before any model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hydra.utils import instantiate

from afd.core.errors import DataError
from afd.core.jsonl import write_jsonl
from afd.tasks.data_dir import FILES
from afd.tasks.records import Example, TaskData


def _check(rows: list[Example], split: str) -> None:
    if not rows:
        raise DataError(f"data split {split!r} is empty")
    for i, row in enumerate(rows):
        if not row.prompt.strip() or not row.response.strip():
            field = "prompt" if not row.prompt.strip() else "response"
            raise DataError(f"data split {split!r}, row {i} (id {row.id!r}): empty {field}")


@dataclass
class DataStage:
    """The task's train and held-out demonstrations and its preference pairs."""

    stage: ClassVar[str] = "data"
    reads: ClassVar[tuple[str, ...]] = ("task",)
    trains: ClassVar[bool] = False

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        data: TaskData = ctx.task.get().build()
        _check(data.train, "train")
        _check(data.heldout, "heldout")
        write_jsonl(out_dir / FILES["train"], data.train)
        write_jsonl(out_dir / FILES["heldout"], data.heldout)
        if data.pairs:
            write_jsonl(out_dir / FILES["pairs"], data.pairs)
        (out_dir / "info.json").write_text(json.dumps(data.info, indent=2))
        return {
            "train_rows": len(data.train),
            "heldout_rows": len(data.heldout),
            "pair_rows": len(data.pairs),
        }


@dataclass
class CorpusStage:
    """The pretraining corpus of a task that has one (HasCorpus), built from the task's
    corpus knobs alone (`task.corpus_config()`), so other knobs reuse it and pi0."""

    stage: ClassVar[str] = "corpus"
    reads: ClassVar[tuple[str, ...]] = ()
    trains: ClassVar[bool] = False

    task: dict

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        data: TaskData = instantiate(self.task).build_corpus()
        _check(data.corpus, "corpus")
        write_jsonl(out_dir / FILES["corpus"], data.corpus)
        (out_dir / "info.json").write_text(json.dumps(data.info, indent=2))
        return {"corpus_rows": len(data.corpus)}
