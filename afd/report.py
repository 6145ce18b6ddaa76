"""Sweep reports: tables and plots offline, and a W&B report with the same panels.

    python -m afd.report SWEEP_DIR                  # tables and plots in SWEEP_DIR/report/
    python -m afd.report SWEEP_DIR --wandb [--entity E] [--project P]   # and a W&B report

Reads the `results.json` of every job under SWEEP_DIR (works on a finished or half-finished
sweep). Panels follow what the jobs measured: gold reward against n always, and one ablation
section per swept setting other than n and seed (`divergence=`, `reward=`, `data.task.noise=`,
...) over every `div/*`, `gold/*` and `rm/*` metric present, mean +- s.e.m. over the other jobs
with that setting (seeds).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from afd.job import flatten, tracked_metrics
from afd.summary import collect, write_csv, write_summary

log = logging.getLogger(__name__)
# Metric families a results.json may carry beyond the tracked ones, nested ({"div": {...}}) or
# flat ("div/forward_kl"): reported under their "/"-joined names.
EXTRA_FAMILIES = ("div",)
REPLICATE_KEYS = ("n", "seed")  # swept, but not ablations: n has its own curve, seeds average


def job_metrics(results: dict) -> dict[str, float]:
    """The numbers a job logged, by their W&B names."""
    metrics = dict(tracked_metrics(results))
    extra = {k: v for k, v in results.items() if k.split("/")[0] in EXTRA_FAMILIES}
    for name, value in flatten(extra).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = value
    return metrics


def override_values(results: dict) -> dict[str, str]:
    """`key -> value` of a job's command-line overrides (`+experiment=toy` -> experiment)."""
    pairs = (o.lstrip("+~").split("=", 1) for o in results.get("overrides", []) if "=" in o)
    return {key: value for key, value in pairs}


def swept_keys(raw: list[dict]) -> list[str]:
    """Overrides that take more than one value across the sweep's jobs, in command-line order."""
    values: dict[str, set] = defaultdict(set)
    for r in raw:
        for key, value in override_values(r).items():
            values[key].add(value)
    return [k for k, v in values.items() if len(v) > 1 or len(raw) == 1 and k == "n"]


def ablation_metrics(raw: list[dict], keys: list[str]) -> list[str]:
    """Metrics to compare across an ablation: Best-of-n ones only when n is not swept."""
    names = sorted({m for r in raw for m in job_metrics(r)})
    depends_on_n = ("gold/bon/", "bon/") if "n" in keys else ()
    return [
        m
        for m in names
        if m.startswith(("div/", "gold/", "rm/", "bon/win_rate"))
        and not m.endswith(("/sem", "_sem"))
        and not (depends_on_n and m.startswith(depends_on_n))
    ]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m afd.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--wandb", action="store_true", help="also build and save a W&B report")
    parser.add_argument("--entity", default=None, help="W&B entity (default: your default entity)")
    parser.add_argument(
        "--project", default=None, help="W&B project (default: the jobs' logger.project)"
    )
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = write_report(args.sweep_dir)
    if report is None:
        print(f"no results.json under {args.sweep_dir}", file=sys.stderr)
        return 1
    print(report)
    if args.wandb:
        from afd.wandb_report import build_report, project_of

        _, raw = collect(args.sweep_dir)
        project = args.project or project_of(args.sweep_dir) or "afd"
        built = build_report(raw, project=project, entity=args.entity, title=args.title)
        built.save()
        print(built.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
