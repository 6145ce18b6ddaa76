"""Rows that flow between stages (prompts, demonstrations, samples, pairs) and their JSONL files.

Reading validates every row and names the file and line of the first bad one, so a
broken dataset fails before any training starts.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


class DataError(ValueError):
    """A dataset row or file that cannot be used; the message names file and line."""


@dataclass
class Example:
    """A prompt with one demonstration; `meta` carries task-specific fields (e.g. gold args)."""

    id: str
    prompt: str
    response: str
    meta: dict = field(default_factory=dict)


@dataclass
class Pair:
    """A preference pair for the Bradley-Terry baseline."""

    id: str
    prompt: str
    chosen: str
    rejected: str


@dataclass
class TaskData:
    train: list[Example]
    heldout: list[Example]
    corpus: list[Example] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _open(path: Path, mode: str):
    return (
        gzip.open(path, mode + "t", encoding="utf-8")
        if path.suffix == ".gz"
        else open(path, mode, encoding="utf-8")
    )


def write_jsonl(path: str | Path, rows) -> None:
    path = Path(path)
    with _open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(asdict(row) if hasattr(row, "__dataclass_fields__") else row))
            f.write("\n")


def iter_jsonl(path: str | Path):
    """Yield (line number, dict) for each non-empty line; malformed JSON names its line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    with _open(path, "r") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}"
                )
            yield lineno, row


def require_text(row: dict, key: str, where: str, allow_empty: bool = False) -> str:
    if key not in row:
        raise DataError(f"{where}: missing field {key!r} (has {sorted(row)})")
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: field {key!r} is empty")
    return value


def read_examples(path: str | Path) -> list[Example]:
    rows = []
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rows.append(
            Example(
                id=str(row.get("id", f"{Path(path).stem}-{lineno}")),
                prompt=require_text(row, "prompt", where),
                response=require_text(row, "response", where),
                meta=row.get("meta") or {},
            )
        )
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def read_pairs(path: str | Path) -> list[Pair]:
    rows = []
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rows.append(
            Pair(
                id=str(row.get("id", f"pair-{lineno}")),
                prompt=require_text(row, "prompt", where),
                chosen=require_text(row, "chosen", where),
                rejected=require_text(row, "rejected", where),
            )
        )
    return rows
