"""Sweep summaries: a table (CSV and Markdown) and a plot of gold reward against n.

Runs as a Hydra callback at the end of every multirun, and on any directory of job
outputs with `python -m afd.summary DIR`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)
COLUMNS = [
    "experiment",
    "reward",
    "divergence",
    "seed",
    "n",
    "gold_bon_mean",
    "gold_bon_sem",
    "gold_policy_mean",
    "gold_sft_mean",
    "gold_init_mean",
    "gold_demo_mean",
    "bon_win_rate_vs_sft",
    "bon_kl_analytic",
    "bon_kl",
    "rm_accuracy",
    "rm_spearman_gold",
    "div_precision",
    "div_coverage",
    "div_entropy",
    "div_forward_kl",
    "div_reverse_kl",
    "div_kl_sft",
    "div_kl_init",
    "trained",
    "cached",
    "wall_s",
    "overrides",
    "job",
]
DIV_COLUMNS = ("precision", "coverage", "entropy", "forward_kl", "reverse_kl", "kl_sft", "kl_init")


def read_json(path: Path) -> dict | None:
    """A job's JSON record, or None (with a warning naming it) if it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        log.warning("skipping %s: not readable JSON (%s); rerun that job", path, e)
        return None


def failed_jobs(sweep_dir: Path) -> list[str]:
    """One line per failed or unreadable job of a sweep: its folder, overrides and error."""
    lines = []
    for path in sorted(Path(sweep_dir).rglob("failure.json")):
        job = str(path.parent.relative_to(sweep_dir))
        record = read_json(path) or {}
        what = " ".join(record.get("overrides", [])) or "(defaults)"
        lines.append(f"{job} ({what}): {record.get('error', 'unreadable failure.json')}")
    for path in sorted(Path(sweep_dir).rglob("results.json")):
        if read_json(path) is None:
            lines.append(f"{path.parent.relative_to(sweep_dir)}: results.json is not readable")
    return lines


def collect(sweep_dir: Path) -> tuple[list[dict], list[dict]]:
    """(rows of the summary table, raw results) from every results.json under sweep_dir."""
    rows, raw = [], []
    for path in sorted(Path(sweep_dir).rglob("results.json")):
        r = read_json(path)
        if r is None:
            continue
        stages = r.get("stages", {}).values()
        rows.append(
            {
                **{
                    k: r.get(k)
                    for k in (
                        "experiment",
                        "reward",
                        "seed",
                        "n",
                        "bon_win_rate_vs_sft",
                        "bon_kl_analytic",
                        "bon_kl",
                        "rm_accuracy",
                        "rm_spearman_gold",
                        "wall_s",
                    )
                },
                **{f"gold_{p}_mean": r["gold"][p]["mean"] for p in ("bon", "sft", "init", "demo")},
                "gold_bon_sem": r["gold"]["bon"]["sem"],
                "divergence": r.get("divergence"),
                "gold_policy_mean": r["gold"].get("policy", {}).get("mean"),
                **{f"div_{k}": r.get("div", {}).get(k) for k in DIV_COLUMNS},
                "trained": sum(s == "trained" for s in stages),
                "cached": sum(s == "cached" for s in stages),
                "overrides": " ".join(r.get("overrides", [])),
                "job": str(path.parent.relative_to(sweep_dir)),
            }
        )
        raw.append(r)
    order = sorted(
        range(len(rows)),
        key=lambda i: (
            str(rows[i]["reward"]),
            str(rows[i]["divergence"]),
            rows[i]["seed"],
            rows[i]["n"],
        ),
    )
    return [rows[i] for i in order], [raw[i] for i in order]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_gold_vs_n(raw: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups: dict[str, list[dict]] = {}
    for r in raw:
        trained = r.get("divergence", "forward_kl") != "forward_kl"
        policy = f", {r['divergence']}" if trained else ""
        groups.setdefault(f"{r['reward']}{policy} (seed {r['seed']})", []).append(r)
    for label, results in groups.items():
        curve = results[0]["bon_curve"]  # every job of a group holds the same full curve
        ns = sorted(int(k) for k in curve)
        mean = [curve[str(k)]["gold_mean"] for k in ns]
        err = [curve[str(k)]["gold_sem"] for k in ns]
        line = ax.errorbar(ns, mean, yerr=err, marker=".", capsize=2, label=f"BoN, {label}")
        swept = sorted(r["n"] for r in results)
        ax.plot(
            swept,
            [r["gold"]["bon"]["mean"] for r in sorted(results, key=lambda r: r["n"])],
            "o",
            color=line[0].get_color(),
            markersize=7,
            markerfacecolor="none",
        )
    first = raw[0]["gold"]
    for name, style in (("init", ":"), ("sft", "--"), ("demo", "-.")):
        ax.axhline(first[name]["mean"], color="gray", linestyle=style, linewidth=1, label=f"{name}")
    ax.set_xscale("log", base=2)
    ticks = sorted({int(k) for r in raw for k in r["bon_curve"]})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("n (best of n)")
    ax.set_ylabel("gold reward")
    ax.set_title(f"{raw[0]['experiment']}: gold reward of Best-of-n")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Rows as CSV; the columns default to every key of the rows, in first-seen order."""
    import csv

    columns = columns or list(dict.fromkeys(c for r in rows for c in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_summary(sweep_dir: str | Path) -> Path | None:
    sweep_dir = Path(sweep_dir)
    rows, raw = collect(sweep_dir)
    failed = failed_jobs(sweep_dir)
    if not rows and not failed:
        log.warning("no results.json under %s: nothing to summarise", sweep_dir)
        return None
    write_csv(sweep_dir / "summary.csv", rows, COLUMNS)
    text = f"# Sweep {sweep_dir}\n\n" + (
        markdown_table(rows, COLUMNS) if rows else "No job finished.\n"
    )
    if failed:
        text += "\nFailed jobs:\n\n" + "".join(f"- {line}\n" for line in failed)
    (sweep_dir / "summary.md").write_text(text)
    if raw:
        plot_gold_vs_n(raw, sweep_dir / "gold_vs_n.png")
    log.info(
        "sweep summary: %s (table), %s (plot)",
        sweep_dir / "summary.md",
        sweep_dir / "gold_vs_n.png",
    )
    return sweep_dir / "summary.md"


class SweepSummary(Callback):
    """Hydra callback: summarise the sweep directory when a multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        write_summary(config.hydra.sweep.dir)
