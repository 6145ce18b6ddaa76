"""Rows that flow between stages (prompts, demonstrations, samples, pairs) and their JSONL files.

Reading validates every row and names the file and line of the first bad one, so a
broken dataset fails before any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from afd.core.errors import DataError
from afd.core.jsonl import iter_jsonl


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


def require_text(row: dict, key: str, where: str, allow_empty: bool = False) -> str:
    if key not in row:
        raise DataError(f"{where}: missing field {key!r} (has {sorted(row)})")
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: field {key!r} is empty")
    return value


def _read(path: str | Path, make, texts: tuple[str, ...], id_prefix: str) -> list:
    """Rows of a JSONL file as `make(id, *texts, row)`, each text field checked (file:line)."""
    rows = []
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        values = [require_text(row, key, where) for key in texts]
        rows.append(make(str(row.get("id", f"{id_prefix}-{lineno}")), *values, row))
    return rows


def read_examples(path: str | Path) -> list[Example]:
    rows = _read(
        path,
        lambda id, prompt, response, row: Example(id, prompt, response, row.get("meta") or {}),
        ("prompt", "response"),
        Path(path).stem,
    )
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def read_pairs(path: str | Path) -> list[Pair]:
    return _read(
        path,
        lambda id, prompt, chosen, rejected, row: Pair(id, prompt, chosen, rejected),
        ("prompt", "chosen", "rejected"),
        "pair",
    )
