"""One Hydra job: validate the config, run the pipeline, write `results.json`, log it.

Artifacts built before a failure stay in the cache (the next run reuses them); a failed
job writes `failure.json` with the error instead of results.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from afd.pipeline.evaluate import evaluate
from afd.pipeline.graph import Pipeline
from afd.pipeline.preflight import preflight
from afd.pipeline.validate import validate
from afd.reporting.metrics import log_bon_curve, tracked_metrics
from afd.runtime.logs import quiet_libraries

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


def run_job(cfg: DictConfig) -> dict:
    start = time.time()
    quiet_libraries()
    parts = validate(cfg)
    preflight(parts.hub_users())  # the Hub out of reach: fail now, naming what to point at
    output_dir, run_name, overrides = job_context(cfg)
    identity = run_identity(cfg)
    tracker = parts.tracker
    config = OmegaConf.to_container(cfg, resolve=True)
    config["run"] = {**identity, "overrides": overrides, "output_dir": str(output_dir)}
    tracker.start(config, run_name, identity["group"], output_dir)
    exit_code = 1
    try:
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
        (output_dir / RESULTS).write_text(json.dumps(results, indent=2))
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
        log.info(
            "gold reward: init %.3f  sft %.3f  demo %.3f  best-of-%d %.3f (win rate vs sft %.3f)",
            results["gold"]["init"]["mean"],
            results["gold"]["sft"]["mean"],
            results["gold"]["demo"]["mean"],
            cfg.n,
            results["gold"]["bon"]["mean"],
            results["bon_win_rate_vs_sft"],
        )
        if "div" in results:
            div = results["div"]
            log.info(
                "policy (%s): gold %.3f  %s",
                results["divergence"],
                results["gold"]["policy"]["mean"],
                "  ".join(
                    f"{k} {div[k]:.3f}"
                    for k in ("precision", "coverage", "entropy", "forward_kl", "reverse_kl")
                    if k in div
                ),
            )
        log.info("results: %s", output_dir / RESULTS)
        exit_code = 0
        return results
    except BaseException as e:
        (output_dir / FAILURE).write_text(
            json.dumps(
                {
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(),
                    "overrides": overrides,
                    "wall_s": round(time.time() - start, 2),
                },
                indent=2,
            )
        )
        raise
    finally:
        tracker.finish(exit_code)
