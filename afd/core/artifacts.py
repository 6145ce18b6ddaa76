"""The files stages talk through, besides Hugging Face model directories: sample sets, score
sets and training histories. Writers and readers live together so the format has one home."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from afd.core.jsonl import iter_jsonl, write_jsonl

SAMPLES, SCORES, HISTORY = "samples.jsonl", "scores.json", "history.json"


def write_samples(out_dir: Path, rows: list[dict]) -> None:
    """Rows of {id, prompt_id, sample, prompt, response, finished, num_tokens, meta}."""
    write_jsonl(Path(out_dir) / SAMPLES, rows)


def read_samples(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(Path(path) / SAMPLES)]


def write_scores(out_dir: Path, ids: list[str], scores: np.ndarray) -> None:
    (Path(out_dir) / SCORES).write_text(json.dumps({"ids": ids, "scores": scores.tolist()}))


def read_scores(path: Path) -> np.ndarray:
    return np.array(json.loads((Path(path) / SCORES).read_text())["scores"], dtype=float)


def read_scored_ids(path: Path) -> list[str]:
    """The row ids of a score artifact, in the order of its scores."""
    return json.loads((Path(path) / SCORES).read_text())["ids"]


def write_history(out_dir: Path, history: list[dict]) -> None:
    """A trained policy's logged steps (proxy reward, KL, gold where known)."""
    (Path(out_dir) / HISTORY).write_text(json.dumps(history))


def read_history(path: Path) -> list[dict]:
    file = Path(path) / HISTORY
    return json.loads(file.read_text()) if file.exists() else []
