"""Config interpolations afd adds to OmegaConf, registered whenever afd is imported:
`${afd.repo_path:RELATIVE}` is a path relative to the repository (the shipped HH-RLHF file
sits beside it), whatever directory a command runs from."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]


def repo_path(relative: str) -> str:
    return str((REPO / relative).resolve())


def register() -> None:
    OmegaConf.register_new_resolver("afd.repo_path", repo_path, replace=True)
