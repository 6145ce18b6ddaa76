"""The training entry point: `python -m afd.train [+experiment=NAME] [-m] [key=value ...]`.

Stable Hydra (1.3) stops reading overrides at a `-m` that follows them, so the value-less
multirun flags are moved to the front of argv before Hydra parses it; the command works
in the order people type it.

Before Hydra runs anything, every job of the command is composed and checked
(afd/cli/checks.py): a bad value anywhere is one line and exit code 2, before any work. A job
that fails later writes `failure.json` and the sweep goes on; the command then exits 1,
naming each failed job. SIGTERM or SIGUSR1 stops the command with 128 + the signal's number;
every finished stage stays cached, so the same command resumes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

MULTIRUN_FLAGS = ("-m", "--multirun")
CONF = Path(__file__).resolve().parents[2] / "conf"  # the repository's config groups
EXIT_BAD_INPUT, EXIT_FAILED = 2, 1
# Hydra's own command-line flags: with any of these the command is Hydra's to answer.
HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve")
HYDRA_FLAGS += ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
HYDRA_FLAGS += ("--shell-completion", "-sc", "--package", "-p", "--version", "--experimental-rerun")
log = logging.getLogger("afd")
_checked: dict[tuple, object] = {}  # job overrides -> the parts checked before the sweep


def gpus_per_node(accelerator: str, devices: int) -> int | None:
    """GPUs to ask SLURM for: one per device unless the trainer runs on CPU."""
    return None if accelerator == "cpu" else int(devices)


OmegaConf.register_new_resolver("afd.gpus_per_node", gpus_per_node, replace=True)


def multirun_flags_first(argv: list[str]) -> list[str]:
    flags = [a for a in argv[1:] if a in MULTIRUN_FLAGS]
    rest = [a for a in argv[1:] if a not in MULTIRUN_FLAGS]
    return argv[:1] + flags + rest


def run_one(cfg: DictConfig):
    """One job, as the task function runs it: its results, or a JobFailure it records."""
    from hydra.core.hydra_config import HydraConfig

    from afd.core.errors import AfdError, JobTerminated
    from afd.pipeline.job import job_context, run_job
    from afd.pipeline.outcome import JobFailure, record

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    try:
        return run_job(cfg, _checked.get(tuple(overrides)))
    except JobTerminated:
        raise
    except Exception as e:  # noqa: BLE001 - the sweep goes on; the command fails at its end
        if isinstance(e, AfdError):
            log.error("job %s failed: %s", " ".join(overrides) or "(defaults)", e)
        else:
            log.exception("job %s failed", " ".join(overrides) or "(defaults)")
        output_dir = str(job_context(cfg)[0])
        kind = "input" if isinstance(e, AfdError) else "error"
        return record(JobFailure(overrides, str(e).splitlines()[0], kind, output_dir))


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def _main(cfg: DictConfig):
    # Imported here, after Hydra has composed the config: `--help` comes fast.
    from afd.runtime import ranks
    from afd.runtime.follow import follow

    # With one SLURM task per device every task runs this job: task 0 runs the pipeline, the
    # others only their ranks of its training stages (afd/runtime/ranks.py).
    if ranks.is_follower():
        follow(cfg.cache_dir)
        return None
    with ranks.leading(cfg.cache_dir):
        return run_one(cfg)


def main() -> None:
    sys.argv = multirun_flags_first(sys.argv)
    args = sys.argv[1:]
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    overrides = [a for a in args if a not in MULTIRUN_FLAGS]
    if not any(a.split("=")[0] in HYDRA_FLAGS for a in overrides):
        from afd.core.errors import AfdError
        from afd.runtime import ranks

        if not ranks.is_follower():
            from afd.cli.checks import check_command

            try:
                _checked.update(check_command(CONF, overrides, multirun))
            except AfdError as e:
                print(f"afd: {e}", file=sys.stderr)
                sys.exit(EXIT_BAD_INPUT)
    from afd.core.errors import JobTerminated
    from afd.runtime import signals

    signals.install()
    try:
        _main()
    except JobTerminated as e:
        print(
            f"afd: {e}; the stages finished so far are cached: run the same command to resume",
            file=sys.stderr,
        )
        sys.exit(128 + e.signum)
    from afd.pipeline.outcome import failures

    failed = failures()
    if failed:
        lines = "\n".join(f"  {' '.join(f.overrides) or '(defaults)'}: {f.error}" for f in failed)
        print(
            f"afd: {len(failed)} job(s) failed (failure.json in each job's directory):\n{lines}",
            file=sys.stderr,
        )
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
