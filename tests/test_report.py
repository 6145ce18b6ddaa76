"""Sweep reports: offline tables and plots, and the W&B report object (built, never saved)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY

from afd.reporting.report import ablation_table, write_report
from afd.reporting.sweep import job_metrics, swept_keys

DIVERGENCES = ("forward_kl", "reverse_kl")


def job_results(n: int, seed: int, divergence: str | None, rng: np.random.Generator) -> dict:
    """A results.json as afd.job writes it, with random numbers (and div/* metrics when the
    sweep ablates a divergence)."""

    def stat():
        return {"mean": float(rng.uniform(-1, 1)), "sem": float(rng.uniform(0, 0.1))}

    overrides = ["+experiment=toy", f"n={n}", f"seed={seed}"]
    choices = {"reward": "init_sft"}
    r = {
        "experiment": "toy",
        "n": n,
        "reward": "init_sft",
        "seed": seed,
        "group": "toy-sweep-1",
        "overrides": overrides,
        "choices": choices,
        "wall_s": 1.0,
        "stages": {"sft": "cached"},
        "gold": {p: stat() for p in ("init", "sft", "demo", "bon")},
        "bon_win_rate_vs_sft": float(rng.uniform()),
        "bon_kl_analytic": math.log(n) - (n - 1) / n,
        "rm_accuracy": float(rng.uniform()),
        "rm_spearman_gold": float(rng.uniform()),
        "bon_curve": {
            str(k): {"gold_mean": float(rng.uniform()), "gold_sem": 0.01} for k in (1, 2, 4, 8, 16)
        },
    }
    if divergence:
        overrides.insert(1, f"divergence={divergence}")
        choices["divergence"] = divergence
        r["div"] = {"forward_kl": float(rng.uniform(0, 2)), "coverage": float(rng.uniform())}
    return r


def write_sweep(root: Path, jobs: list[dict]) -> Path:
    for i, r in enumerate(jobs):
        (root / str(i)).mkdir(parents=True)
        (root / str(i) / "results.json").write_text(json.dumps(r))
    return root


@pytest.fixture
def divergence_sweep(tmp_path):
    rng = np.random.default_rng(0)
    jobs = [job_results(16, seed, d, rng) for d in DIVERGENCES for seed in (0, 1, 2)]
    return write_sweep(tmp_path / "div", jobs), jobs


@pytest.fixture
def n_sweep(tmp_path):
    rng = np.random.default_rng(1)
    return write_sweep(tmp_path / "n", [job_results(n, 0, None, rng) for n in (4, 16)])


def test_metrics_and_swept_keys(divergence_sweep):
    _, jobs = divergence_sweep
    assert swept_keys(jobs) == ["divergence", "seed"]
    metrics = job_metrics(jobs[0])
    assert metrics["div/forward_kl"] == jobs[0]["div"]["forward_kl"]
    assert metrics["gold/sft/mean"] == jobs[0]["gold"]["sft"]["mean"]
    assert job_metrics({**jobs[0], "div/flat": 0.5})["div/flat"] == 0.5


def test_ablation_is_mean_and_sem_over_seeds(divergence_sweep):
    sweep, jobs = divergence_sweep
    report = write_report(sweep)
    assert report.exists() and "## Ablation: divergence" in report.read_text()
    assert "Ablation: seed" not in report.read_text()  # seeds are replicates
    with open(sweep / "report" / "ablation_divergence.csv") as f:
        rows = {row["divergence"]: row for row in csv.DictReader(f)}
    for d in DIVERGENCES:
        values = [j["div"]["coverage"] for j in jobs if j["choices"]["divergence"] == d]
        assert float(rows[d]["div/coverage mean"]) == pytest.approx(np.mean(values))
        sem = np.std(values, ddof=1) / math.sqrt(len(values))
        assert float(rows[d]["div/coverage sem"]) == pytest.approx(sem)
        assert int(rows[d]["jobs"]) == 3
    assert (sweep / "report" / "ablation_divergence.png").stat().st_size > 5000
    with open(sweep / "report" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == len(jobs)
    # n is fixed in this sweep, so Best-of-n metrics are comparable across the ablation too
    assert "gold/bon/mean mean" in rows["forward_kl"]


def test_n_sweep_has_no_ablation(n_sweep):
    write_report(n_sweep)
    assert not list((n_sweep / "report").glob("ablation_*"))
    assert (n_sweep / "gold_vs_n.png").exists()


def test_ablation_table_skips_missing_values():
    rng = np.random.default_rng(2)
    jobs = [job_results(16, s, "js", rng) for s in (0, 1)]
    del jobs[1]["div"]["coverage"]
    (row,) = ablation_table(jobs, "divergence", ["div/coverage"])
    assert row["div/coverage mean"] == jobs[0]["div"]["coverage"]
    assert math.isnan(row["div/coverage sem"])


class FakeService:
    """W&B's GraphQL service, answering the one query a report build makes."""

    app_url = "https://wandb.example"

    def __init__(self):
        self.queries = []

    def execute_graphql(self, query, variables=None):
        self.queries.append(dict(variables or {}))
        return {"project": {"internalId": "project-1"}}


@pytest.fixture
def offline_wandb(monkeypatch):
    from wandb_workspaces.reports.v2 import interface

    class Api:
        default_entity = "someone"

        def __init__(self):
            self._service_api = FakeService()

    api = Api()
    monkeypatch.setattr(interface, "_get_api", lambda: api)
    return api


def panels_of(report) -> list[dict]:
    spec = report._to_model().model_dump(by_alias=True, mode="json")["spec"]
    grids = [b for b in spec["blocks"] if b.get("type") == "panel-grid"]
    return [
        (g["metadata"]["runSets"], p)
        for g in grids
        for p in g["metadata"]["panelBankSectionConfig"]["panels"]
    ]


def test_wandb_report_has_gold_vs_n_and_divergence_panels(divergence_sweep, offline_wandb):
    from afd.reporting.wandb_report import build_report

    _, jobs = divergence_sweep
    report = build_report(jobs, project="afd")
    panels = panels_of(report)
    for runsets, _ in panels:  # every panel shows exactly this sweep's runs
        (leaf,) = runsets[0]["filters"]["filters"]
        assert leaf["key"] == {"section": "run", "name": "group"} and leaf["value"] == "toy-sweep-1"
    configs = [(p["viewType"], p["config"]) for _, p in panels]
    curves = [c for kind, c in configs if kind == "Run History Line Plot"]
    assert curves[0]["xAxis"] == "bon_curve/n" and curves[0]["metrics"] == ["bon_curve/gold_mean"]
    scatter = [c for kind, c in configs if kind == "Scatter Plot"]
    assert scatter[0]["xAxis"] == "summary:n" and scatter[0]["yAxis"] == "summary:gold/bon/mean"
    bars = {tuple(c["metrics"]): c for kind, c in configs if kind == "Bar Chart"}
    for metric in ("div/forward_kl", "div/coverage", "gold/sft/mean", "rm/accuracy"):
        assert bars[(metric,)]["groupBy"] == "run.value.choices.divergence"
        assert bars[(metric,)]["groupArea"] == "stderr"
    assert report.entity == "someone"
    assert offline_wandb._service_api.queries[0] == {"entityName": "someone", "projectName": "afd"}


def test_wandb_report_without_ablation(n_sweep, offline_wandb):
    from afd.reporting.summary import collect
    from afd.reporting.wandb_report import build_report

    _, raw = collect(n_sweep)
    configs = [p["config"] for _, p in panels_of(build_report(raw, project="p", entity="team"))]
    assert not [c for c in configs if any(m.startswith("div/") for m in c.get("metrics", []))]
    assert len(configs) == 4  # the gold-vs-n section only


@pytest.mark.slow
def test_sweep_groups_runs_and_logs_the_bon_curve(tmp_path):
    """A real sweep with W&B offline: one group per experiment and sweep, runs named by their
    overrides, the exact BoN curve logged over n; then the report of that sweep."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "offline",
        "HOME": str(tmp_path),
        "AFD_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    size = [o for o in TINY if not o.startswith(("n=", "logger="))]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "afd.train",
            "+experiment=toy",
            *size,
            "logger=wandb",
            "-m",
            "n=2,4",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {
        r["n"]: r
        for r in (json.loads(p.read_text()) for p in (tmp_path / "multirun").rglob("results.json"))
    }
    (sweep_dir,) = {p.parent.parent for p in (tmp_path / "multirun").rglob("results.json")}
    stamp = "-".join(sweep_dir.parts[-2:])
    assert {r["group"] for r in jobs.values()} == {f"toy-{stamp}"}
    assert jobs[2]["choices"]["reward"] == "init_sft"
    for n in jobs:
        (run,) = (sweep_dir / str(sorted(jobs).index(n))).rglob("run-*.wandb")
        record = run.read_bytes()  # W&B's offline run record: group and name are in it verbatim
        assert f"toy-{stamp}".encode() in record and f"n={n}".encode() in record
        assert b"bon_curve/gold_mean" in record
    report = subprocess.run(
        [sys.executable, "-m", "afd.report", str(sweep_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert (sweep_dir / "report" / "report.md").exists()
