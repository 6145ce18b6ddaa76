"""Hydra's submitit SLURM launcher, made to finish a sweep some of whose jobs die hard.

The stock launcher raises at the first job that never produced a result (a segfault, an OOM
kill, `os._exit`) and leaves the rest of the array unobserved. This one waits for every job,
turns a job that died without a result into a failed job whose error carries its SLURM state
and log tail, writes that job's `failure.json` (so sweep summaries list it), summarises the
sweep, and only then lets Hydra fail the sweep. `result_timeout_s` bounds how long a dead
job is waited for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)
FAILURE = "failure.json"  # the name afd.pipeline.job gives a failed job's record


class AfdSlurmLauncher(SlurmLauncher):
    def __init__(self, result_timeout_s: float = 15.0, **params: Any) -> None:
        super().__init__(**params)
        self.result_timeout_s = float(result_timeout_s)

    def _executor(self):
        import submitit

        params = dict(self.params)
        folder = params.pop("submitit_folder")
        executor = submitit.AutoExecutor(
            folder=folder,
            cluster=self._EXECUTOR,
            **{f"{self._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout", 0)},
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items()}
        )
        return executor

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        # A class attribute of submitit's Job (no public setting): how long a finished job's
        # missing result file is waited for.
        submitit.core.core.Job._results_timeout_s = self.result_timeout_s
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        params: list[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        jobs = executor.map_array(self, *zip(*params, strict=True))
        returns = [
            self._collect(job, list(ov), idx)
            for job, (ov, _, idx, _, _) in zip(jobs, params, strict=True)
        ]
        from afd.pipeline.outcome import JobFailure, record

        for r in returns:  # a job that failed for its own reasons returned its JobFailure
            if r.status == JobStatus.COMPLETED and isinstance(r.return_value, JobFailure):
                record(r.return_value)
        failed = [r for r in returns if r.status == JobStatus.FAILED]
        if failed:
            log.error("%d of %d jobs failed:", len(failed), len(returns))
            for r in failed:
                log.error("  %s: %s", " ".join(r.overrides), str(r._return_value).splitlines()[0])
            from afd.reporting.summary import write_summary

            write_summary(sweep_dir)  # Hydra's end-of-sweep callbacks do not run on failure
        return returns

    def _job_dir(self, overrides: list[str], idx: int, job_id: str) -> Path:
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = idx
            cfg.hydra.job.id = job_id
        return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)

    def _collect(self, job, overrides: list[str], idx: int) -> JobReturn:
        from submitit.core.utils import UncompletedJobError

        try:
            return job.results()[0]
        except UncompletedJobError as e:  # also FailedJobError: died outside the task function
            state = job.state
            summary = (
                f"SLURM job {job.job_id} ended without a result (SLURM state {state}); "
                f"its log: {job.paths.stderr}"
            )
            error = RuntimeError(f"{summary}\n{str(e).strip()}")
            job_dir = self._job_dir(overrides, idx, str(job.job_id))
            job_dir.mkdir(parents=True, exist_ok=True)
            (job_dir / FAILURE).write_text(
                json.dumps(
                    {
                        "error": summary,
                        "slurm_job_id": str(job.job_id),
                        "slurm_state": state,
                        "log": str(job.paths.stderr),
                        "overrides": overrides,
                        "traceback": str(e),
                    },
                    indent=2,
                )
            )
            ret = JobReturn(
                overrides=overrides,
                working_dir=str(job_dir),
                task_name=str(self.config.hydra.job.name),
                status=JobStatus.FAILED,
            )
            ret.return_value = error
            return ret
