"""Every job of a command checked before the first one starts: each job's config is composed
as Hydra will compose it, and its parts built (afd/pipeline/validate.py), so a bad value in
the last job of a sweep fails the command at once, as one line, before any model loads."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from afd.core.errors import ConfigError
from afd.pipeline.parts import JobParts
from afd.pipeline.validate import validate


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job the command runs (one, unless it is a multirun)."""
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def compose_job(conf_dir: Path, overrides: list[str]):
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose("config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        raise ConfigError(" ".join(lines) or type(e).__name__) from None


def check_cache_dir(value: str) -> None:
    path = Path(value).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"cache_dir={value}: {existing} is a file, not a directory")
    if existing is not None:
        try:  # a real probe: permission bits say nothing to root, or of read-only mounts
            tempfile.TemporaryDirectory(dir=existing, prefix=".afd-probe-").cleanup()
        except OSError:
            raise ConfigError(f"cache_dir={value}: {existing} is not writable") from None


def check_cluster(cfg, multirun: bool) -> None:
    if "cluster" not in cfg:
        return
    if not multirun:
        raise ConfigError(
            "+cluster=slurm submits the jobs of a sweep: add -m (e.g. `-m n=16`), or drop "
            "+cluster=slurm to run this job here"
        )
    if shutil.which("sbatch") is None:
        raise ConfigError(
            "+cluster=slurm, but there is no SLURM here (no `sbatch` on PATH): run on a SLURM "
            "login node, or drop +cluster=slurm to run locally"
        )


def check_command(conf_dir: Path, overrides: list[str], multirun: bool) -> dict[tuple, JobParts]:
    """The parts of every job, by its override list; the first problem is a ConfigError."""
    parts = {}
    jobs = job_overrides(overrides, multirun)
    for job in jobs:
        cfg = compose_job(conf_dir, job)
        check_cluster(cfg, multirun)
        check_cache_dir(str(cfg.cache_dir))
        try:
            parts[tuple(job)] = validate(cfg)
        except ConfigError as e:
            swept = [o for o in job if any(o not in other for other in jobs)]
            where = f" (in the job {' '.join(swept)})" if multirun and swept else ""
            raise ConfigError(f"{e}{where}") from None
    return parts
