"""One Hydra job: validate the config, run the pipeline, write `results.json`, log it.

Artifacts built before a failure stay in the cache (the next run reuses them); a failed
job writes `failure.json` with the error instead of results.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from afd.core.errors import AfdError, JobTerminated
from afd.core.files import write_json_atomic
from afd.pipeline.evaluate import evaluate
from afd.pipeline.graph import Pipeline
from afd.pipeline.parts import JobParts
from afd.pipeline.preflight import preflight
from afd.pipeline.validate import validate
from afd.reporting.metrics import log_bon_curve, tracked_metrics
from afd.runtime.logs import quiet_libraries
from afd.runtime.signals import terminated_from

log = logging.getLogger(__name__)
RESULTS, FAILURE = "results.json", "failure.json"


def job_context(cfg: DictConfig) -> tuple[Path, str, list[str]]:
    """(output dir, run name, overrides) of this job, inside or outside a Hydra app."""
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        name = hc.job.override_dirname or cfg.name
        return Path(hc.runtime.output_dir), name, overrides
    out = Path(cfg.get("output_dir") or ".")
    out.mkdir(parents=True, exist_ok=True)
    return out, cfg.name, []


def run_identity(cfg: DictConfig) -> dict:
    """Where a job belongs: its W&B group (one per experiment and sweep), its sweep and the
    config-group choices it made (e.g. reward=init_sft), which reports group runs by."""
    sweep, choices = None, {}
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            sweep = "-".join(Path(hc.sweep.dir).parts[-2:])  # multirun/DATE/TIME -> DATE-TIME
        choices = {
            k: v
            for k, v in hc.runtime.choices.items()
            if not k.startswith("hydra/") and v is not None
        }
    return {
        "group": f"{cfg.name}-{sweep}" if sweep else str(cfg.name),
        "sweep": sweep,
        "choices": choices,
    }


def failure_record(error: BaseException, overrides: list[str], start: float) -> dict:
    """What `failure.json` says: the error in one line, its kind, and the traceback."""
    kind = (
        "terminated"
        if isinstance(error, JobTerminated)
        else "input"
        if isinstance(error, AfdError)
        else "error"
    )
    return {
        "error": f"{type(error).__name__}: {error}",
        "kind": kind,  # input: the config or data (the message says what to fix)
        "traceback": "".join(traceback.format_exception(error)),
        "overrides": overrides,
        "wall_s": round(time.time() - start, 2),
    }


def report(results: dict, tracker, n: int) -> None:
    """The job's numbers to the tracker and the log."""
    for r in results.get("rounds", {}).get("per_round", []):
        tracker.log(
            {f"rounds/{k}": v for k, v in r.items() if k != "round" and v is not None},
            step_key="rounds/round",
            step=r["round"],
        )
    summary = tracked_metrics(results)
    tracker.log(summary)
    tracker.summary(summary)
    log_bon_curve(tracker, results["bon_curve"])
    gold = results["gold"]
    log.info(
        "gold reward: init %.3f  sft %.3f  demo %.3f  best-of-%d %.3f (win rate vs sft %.3f)",
        gold["init"]["mean"],
        gold["sft"]["mean"],
        gold["demo"]["mean"],
        n,
        gold["bon"]["mean"],
        results["bon_win_rate_vs_sft"],
    )
    div = results.get("div", {})
    shown = ("precision", "coverage", "entropy", "forward_kl", "reverse_kl")
    log.info(
        "policy (%s): gold %.3f  %s",
        results["divergence"],
        gold["policy"]["mean"],
        "  ".join(f"{k} {div[k]:.3f}" for k in shown if k in div),
    )


def run_job(cfg: DictConfig, parts: JobParts | None = None) -> dict:
    """Run one job; `parts` are its validated parts when the caller checked the config already.
    Any failure, from config checks to the last stage, leaves `failure.json` in the job's
    output dir (and no results.json); every stage finished before it stays cached."""
    start = time.time()
    quiet_libraries()
    output_dir, run_name, overrides = job_context(cfg)
    (output_dir / FAILURE).unlink(missing_ok=True)
    tracker, exit_code = None, 1
    try:
        parts = parts or validate(cfg)
        # the Hub out of reach: fail now, naming what to point at, or note what stands in
        parts.unavailable = preflight(parts.hub_users())
        identity = run_identity(cfg)
        config = OmegaConf.to_container(cfg, resolve=True)
        config["run"] = {**identity, "overrides": overrides, "output_dir": str(output_dir)}
        tracker = parts.tracker
        tracker.start(config, run_name, identity["group"], output_dir)
        pipe = Pipeline(parts, tracker)
        metrics = evaluate(pipe, cfg.n)
        results = {
            "experiment": cfg.name,
            "n": cfg.n,
            "reward": parts.reward.name,
            "seed": cfg.seed,
            "overrides": overrides,
            "group": identity["group"],
            "choices": identity["choices"],
            **metrics,
            "stages": dict(pipe.status),
            "artifacts": {label: str(a.path) for label, a in pipe.artifacts.items()},
            "wall_s": round(time.time() - start, 2),
        }
        write_json_atomic(output_dir / RESULTS, results)
        report(results, tracker, cfg.n)
        log.info("results: %s", output_dir / RESULTS)
        exit_code = 0
        return results
    except BaseException as e:
        write_json_atomic(output_dir / FAILURE, failure_record(e, overrides, start))
        terminated = terminated_from(e)
        if terminated is not None and terminated is not e:
            raise terminated from e
        raise
    finally:
        if tracker is not None:
            tracker.finish(exit_code)
