"""Config of `hydra/launcher=afd_slurm`: Hydra's submitit SLURM launcher config plus two keys."""

from dataclasses import dataclass
from typing import List, Optional  # noqa: UP035 (OmegaConf structured configs)

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf


@dataclass
class AfdSlurmQueueConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.afd_slurm_launcher.launcher.AfdSlurmLauncher"
    # Extra srun flags for the job step, e.g. --kill-on-bad-exit=1: when one task of a
    # multi-task job fails, SLURM ends the others instead of letting them wait.
    srun_args: Optional[List[str]] = None  # noqa: UP006, UP045
    # Seconds submitit waits for a result file after SLURM says a job ended (it may still be
    # on its way over a slow shared file system); a job that died hard costs this much.
    result_timeout_s: float = 15.0


ConfigStore.instance().store(
    group="hydra/launcher", name="afd_slurm", node=AfdSlurmQueueConf(), provider="afd"
)
