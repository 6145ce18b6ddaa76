"""Instruction data in the Alpaca format (`data=alpaca`): JSON or JSONL rows of
{"instruction", "input" (optional), "output"}, the shape most instruction-tuning sets and
stronger-model demonstration dumps come in.

Each row becomes a dialogue prompt in the HH format ("\\n\\nHuman: <instruction>\\n\\n<input>
\\n\\nAssistant:"), so HH's stop strings, chat templates and judges apply unchanged, and its
output the demonstration. Held-out prompts are a hash-chosen `heldout_fraction` of the
instructions (or a second file); bad rows name their file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

from afd.core.errors import DataError
from afd.core.jsonl import iter_jsonl
from afd.models.dialogue import ASSISTANT, HUMAN
from afd.tasks.prepare import SplitSpec, assemble
from afd.tasks.records import Example, TaskData, require_text


def alpaca_rows(path: Path):
    """(where, row) of a JSON array file or a JSONL file."""
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON array of rows, got {type(rows).__name__}")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
            yield f"{path}: row {i}", row
        return
    for lineno, row in iter_jsonl(path):
        yield f"{path}:{lineno}", row


def to_example(row: dict, where: str, row_id: str) -> Example:
    instruction = require_text(row, "instruction", where).strip()
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise DataError(f"{where}: field 'input' must be a string, got {type(extra).__name__}")
    body = f"{instruction}\n\n{extra.strip()}" if extra.strip() else instruction
    output = require_text(row, "output", where).strip()
    return Example(row_id, f"{HUMAN} {body}{ASSISTANT}", output, {"source": where})


class AlpacaTask:
    """`_target_` of conf/data/alpaca.yaml. Files are checked here and read in `build()`."""

    name = "alpaca"

    def __init__(
        self,
        train: str | None,
        heldout: str | None,
        heldout_fraction: float,
        num_train_prompts: int | None,
        num_heldout_prompts: int | None,
        dedup_prompts: bool,
        seed: int,
    ):
        self.spec = SplitSpec(
            num_train_prompts, num_heldout_prompts, None, heldout_fraction, dedup_prompts, seed
        )
        self.spec.check()
        self.train = self._file(train, "train")
        self.heldout = self._file(heldout, "heldout") if heldout else None

    @staticmethod
    def _file(value: str | None, key: str) -> Path:
        if not value:
            raise DataError(f"data.task.{key} is not set: give an Alpaca JSON or JSONL file")
        path = Path(value).expanduser()
        if not path.is_file():
            raise DataError(f"data.task.{key}={value}: no such file")
        return path

    def examples(self, path: Path) -> list[Example]:
        rows = [
            to_example(r, where, f"{path.stem}-{i}")
            for i, (where, r) in enumerate(alpaca_rows(path))
        ]
        if not rows:
            raise DataError(f"{path}: no rows")
        return rows

    def build(self) -> TaskData:
        heldout = self.examples(self.heldout) if self.heldout else None
        info = {
            "name": self.name,
            "train": str(self.train),
            "heldout": str(self.heldout or "hash of train"),
        }
        return assemble(self.examples(self.train), heldout, [], self.spec, info)
