"""Stage `data`: materialise a task's splits as JSONL so every later stage reads files.

Rows are validated here (missing, empty or mistyped fields name their file and line), so
a bad dataset fails before any model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from afd.data.records import DataError, Example, TaskData, read_examples, read_pairs, write_jsonl

FILES = {
    "train": "train.jsonl",
    "heldout": "heldout.jsonl",
    "corpus": "corpus.jsonl",
    "pairs": "pairs.jsonl",
}


def _check(rows: list[Example], split: str) -> None:
    if not rows:
        raise DataError(f"data split {split!r} is empty")
    for i, row in enumerate(rows):
        if not row.prompt.strip() or not row.response.strip():
            field = "prompt" if not row.prompt.strip() else "response"
            raise DataError(f"data split {split!r}, row {i} (id {row.id!r}): empty {field}")


def build(out_dir: Path, task) -> dict:
    data: TaskData = task.build()
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


def build_corpus(out_dir: Path, task) -> dict:
    """Stage `corpus`: the pretraining corpus of a task that has one (the synthetic task)."""
    data: TaskData = task.build_corpus()
    _check(data.corpus, "corpus")
    write_jsonl(out_dir / FILES["corpus"], data.corpus)
    (out_dir / "info.json").write_text(json.dumps(data.info, indent=2))
    return {"corpus_rows": len(data.corpus)}


class DataDir:
    """Read access to a `data` artifact."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.info = json.loads((self.path / "info.json").read_text())

    def examples(self, split: str) -> list[Example]:
        return read_examples(self.path / FILES[split])

    def pairs(self):
        path = self.path / FILES["pairs"]
        if not path.exists():
            raise DataError(f"{self.info.get('name')}: this task has no preference pairs")
        return read_pairs(path)

    @property
    def demonstrator_only_tokens(self) -> list[str]:
        return list(self.info.get("demonstrator_only_tokens", []))

    def policy_view(self, response: str) -> str:
        """A demonstration as the policy can produce it: demonstrator-only tokens removed."""
        banned = set(self.demonstrator_only_tokens)
        return " ".join(w for w in response.split(" ") if w not in banned) if banned else response
