"""The training entry point: `python -m afd.train [+experiment=NAME] [-m] [key=value ...]`.

Stable Hydra (1.3) stops reading overrides at a `-m` that follows them, so the value-less
multirun flags are moved to the front of argv before Hydra parses it; the command works
in the order people type it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

MULTIRUN_FLAGS = ("-m", "--multirun")
CONF = Path(__file__).resolve().parents[2] / "conf"  # the repository's config groups


def gpus_per_node(accelerator: str, devices: int) -> int | None:
    """GPUs to ask SLURM for: one per device unless the trainer runs on CPU."""
    return None if accelerator == "cpu" else int(devices)


OmegaConf.register_new_resolver("afd.gpus_per_node", gpus_per_node, replace=True)


def multirun_flags_first(argv: list[str]) -> list[str]:
    flags = [a for a in argv[1:] if a in MULTIRUN_FLAGS]
    rest = [a for a in argv[1:] if a not in MULTIRUN_FLAGS]
    return argv[:1] + flags + rest


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def _main(cfg: DictConfig) -> float | None:
    # Imported here, after Hydra has composed the config: `--help` and config errors come fast.
    from afd.pipeline.job import run_job
    from afd.runtime import ranks
    from afd.runtime.follow import follow

    # With one SLURM task per device every task runs this job: task 0 runs the pipeline, the
    # others only their ranks of its training stages (afd/runtime/ranks.py).
    if ranks.is_follower():
        follow(cfg.cache_dir)
        return None
    with ranks.leading(cfg.cache_dir):
        results = run_job(cfg)
    return results["gold"]["bon"]["mean"]


def main() -> None:
    sys.argv = multirun_flags_first(sys.argv)
    _main()


if __name__ == "__main__":
    main()
