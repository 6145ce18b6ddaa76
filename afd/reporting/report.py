"""Sweep reports offline: tables and plots in SWEEP_DIR/report/ (`python -m afd.report`).

Reads the `results.json` of every job under SWEEP_DIR (works on a finished or half-finished
sweep). Panels follow what the jobs measured: gold reward against n always, and one ablation
section per swept setting other than n and seed (`divergence=`, `reward=`, `data.task.noise=`,
...) over every `div/*`, `gold/*` and `rm/*` metric present, mean +- s.e.m. over the other jobs
with that setting (seeds).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from afd.reporting.summary import collect, write_csv, write_summary
from afd.reporting.sweep import (
    REPLICATE_KEYS,
    ablation_metrics,
    job_metrics,
    override_values,
    swept_keys,
)

log = logging.getLogger(__name__)


def sem(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def ablation_table(raw: list[dict], key: str, metrics: list[str]) -> list[dict]:
    """One row per value of `key`: each metric's mean and s.e.m. over the jobs with that value."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in raw:
        groups[override_values(r).get(key, "")].append(job_metrics(r))
    rows = []
    for value in sorted(groups):
        row: dict = {key: value, "jobs": len(groups[value])}
        for m in metrics:
            xs = [j[m] for j in groups[value] if j.get(m) is not None and not math.isnan(j[m])]
            row[f"{m} mean"] = float(np.mean(xs)) if xs else float("nan")
            row[f"{m} sem"] = sem(xs)
        rows.append(row)
    return rows


def plot_ablation(rows: list[dict], key: str, metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    labels = [str(r[key]) for r in rows]
    for ax, m in zip(axes.flat, metrics, strict=False):
        ax.bar(
            labels,
            [r[f"{m} mean"] for r in rows],
            yerr=[0 if math.isnan(r[f"{m} sem"]) else r[f"{m} sem"] for r in rows],
            capsize=3,
        )
        ax.set_title(m, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(f"ablation over {key} (mean +- s.e.m. over jobs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(sweep_dir: str | Path) -> Path | None:
    """Tables and plots under SWEEP_DIR/report/ (and the sweep summary); returns report.md."""
    sweep_dir = Path(sweep_dir)
    rows, raw = collect(sweep_dir)
    if not raw:
        log.warning("no results.json under %s", sweep_dir)
        return None
    write_summary(sweep_dir)
    out = sweep_dir / "report"
    out.mkdir(exist_ok=True)
    keys = swept_keys(raw)
    write_csv(
        out / "metrics.csv",
        [
            {"job": row["job"], **{k: override_values(r).get(k) for k in keys}, **job_metrics(r)}
            for row, r in zip(rows, raw, strict=True)
        ],
    )
    lines = [
        f"# {raw[0]['experiment']}: {sweep_dir}",
        "",
        f"{len(raw)} jobs; swept: {', '.join(keys) or 'nothing'}.",
        "",
        "![gold reward against n](../gold_vs_n.png)",
        "",
        "## Jobs",
        "",
        (sweep_dir / "summary.md").read_text().split("\n", 2)[2],
    ]
    metrics = ablation_metrics(raw, keys)
    for key in (k for k in keys if k not in REPLICATE_KEYS):
        table = ablation_table(raw, key, metrics)
        write_csv(out / f"ablation_{key}.csv", table)
        plot_ablation(table, key, metrics, out / f"ablation_{key}.png")
        lines += [
            f"## Ablation: {key}",
            "",
            f"![{key}](ablation_{key}.png)",
            "",
            "| " + " | ".join([key, "jobs", *metrics]) + " |",
            "|" + "---|" * (len(metrics) + 2),
        ]
        for t in table:
            cells = [f"{t[f'{m} mean']:.4g} +- {t[f'{m} sem']:.2g}" for m in metrics]
            lines.append("| " + " | ".join([str(t[key]), str(t["jobs"]), *cells]) + " |")
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))
    log.info("report: %s", out / "report.md")
    return out / "report.md"
