"""JSONL(.gz) files, the format every data and sample artifact is written in."""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

from afd.core.errors import DataError


def open_text(path: Path, mode: str):
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def write_jsonl(path: str | Path, rows) -> None:
    with open_text(Path(path), "w") as f:
        for row in rows:
            f.write(json.dumps(asdict(row) if is_dataclass(row) else row))
            f.write("\n")


def iter_jsonl(path: str | Path):
    """Yield (line number, dict) for each non-empty line; malformed JSON names its line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                    f"{e.start + 1}); re-encode the file as UTF-8"
                ) from None
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
