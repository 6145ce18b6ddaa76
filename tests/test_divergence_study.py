"""The divergence ablation end to end at test size: adversarial jobs through the pipeline,
the one-line study command (reduced: tiny model, few adversarial steps, two seeds) run by
experiments/divergence_study.py, and the analysis notebook executed on its results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY, execute_notebook

from afd.pipeline.job import run_job

TEST_CONF = ROOT / "tests" / "conf"
SEARCHPATH = f"hydra.searchpath=[file://{TEST_CONF}]"


def tiny_divergence(tiny_cfg, choice: str, *overrides: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    base = tiny_cfg()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                *TINY,
                f"divergence={choice}",
                SEARCHPATH,
                f"cache_dir={base.cache_dir}",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.output_dir = base.output_dir
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize(
    "choice, level", [("reverse_kl_tiny", "trajectory"), ("reverse_kl_occupancy_tiny", "occupancy")]
)
def test_adversarial_job_trains_its_policy_and_reports_it(tiny_cfg, choice, level):
    results = run_job(tiny_divergence(tiny_cfg, choice))
    assert (
        results["divergence"] == choice.removesuffix("_tiny")
        and results["divergence_level"] == level
    )
    stages = results["stages"]
    assert stages["policy"] == "trained" and stages["sample/policy/heldout"] == "trained"
    assert stages["policy_metrics/policy"] == "trained"
    # pi_SFT is still judged on its own pool; Best-of-n runs on the adversarial policy's pool
    assert {"sample/sft/heldout", "score/reward/policy/heldout"} <= set(stages)
    manifest = json.loads((Path(results["artifacts"]["policy"]) / "manifest.json").read_text())
    assert manifest["upstream"]["start"]["path"] == results["artifacts"]["sft"]
    assert manifest["metrics"]["final_disc_accuracy"] >= 0
    curve = results["policy_curve"]
    assert [c["step"] for c in curve] == [0, 4, 8, 11]
    assert all("gold" in c for c in curve) and all("kl" in c for c in curve[1:])
    div = results["div"]
    assert 0 <= div["precision"] <= 1 and 0 <= div["coverage"] <= 1 and div["reverse_kl"] >= 0
    assert div["forward_kl"] > 0 and div["entropy"] > 0


@pytest.mark.slow
def test_reduced_study_and_notebook(tmp_path):
    overrides = [o for o in TINY if not o.startswith(("logger=", "progress="))]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "divergence_study.py"),
            "--workdir",
            str(tmp_path),
            "--seeds",
            "0,1",
            "--divergences",
            "forward_kl,reverse_kl_tiny,js_tiny",
            SEARCHPATH,
            "logger=csv",
            "eval.coverage_samples=4",
            *overrides,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "study wall" in proc.stdout and "reverse KL vs forward KL" in proc.stdout
    (sweep,) = {p.parent.parent for p in (tmp_path / "multirun").glob("*/*/*/results.json")}
    results = [json.loads(p.read_text()) for p in sweep.rglob("results.json")]
    assert sorted((r["divergence"], r["seed"]) for r in results) == sorted(
        (d, s) for d in ("forward_kl", "reverse_kl", "js") for s in (0, 1)
    )
    # one pi0, one pi_SFT and one reward model per seed, shared by the three objectives
    assert len(list((tmp_path / "cache" / "pretrain").glob("*/manifest.json"))) == 2
    assert len(list((tmp_path / "cache" / "sft").glob("*/manifest.json"))) == 2
    assert len(list((tmp_path / "cache" / "adversarial").glob("*/manifest.json"))) == 4
    assert "| toy_divergence |" in (sweep / "summary.md").read_text()

    text = execute_notebook("divergence_study", sweep)
    assert "4 jobs" not in text and "6 jobs" in text and "'checked': True" in text
