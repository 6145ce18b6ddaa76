"""Read access to a `data` artifact: a task's splits as JSONL files plus `info.json`."""

from __future__ import annotations

import json
from pathlib import Path

from afd.core.errors import DataError
from afd.tasks.records import Example, Pair, read_examples, read_pairs

FILES = {
    "train": "train.jsonl",
    "heldout": "heldout.jsonl",
    "corpus": "corpus.jsonl",
    "pairs": "pairs.jsonl",
}


class DataDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.info = json.loads((self.path / "info.json").read_text())

    def examples(self, split: str, limit: int | None = None) -> list[Example]:
        """The split's rows; the first `limit` of them when it is set (None or 0: all)."""
        rows = read_examples(self.path / FILES[split])
        return rows[:limit] if limit else rows

    def pairs(self) -> list[Pair]:
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
