"""Reading a sweep's results for the divergence study and the reward-extrapolation studies.

`load` turns every `results.json` under a sweep directory into one DataFrame row;
`by_objective` averages over seeds (mean and s.e.m.); the plot functions draw what
notebooks/divergence_study.ipynb shows: precision against coverage, divergences and gold
reward per objective, and over-optimisation (gold and proxy reward against n and KL).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

DIV_KEYS = (
    "precision",
    "coverage",
    "mode_share",
    "entropy",
    "forward_kl",
    "reverse_kl",
    "support_mass",
    "distinct_1",
    "distinct_2",
    "self_bleu",
)
ORDER = ("forward_kl", "js", "reverse_kl")


def load(sweep_dir: str | Path) -> tuple[pd.DataFrame, list[dict]]:
    """(one row per job, the raw results) of every results.json under sweep_dir."""
    raw = [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).rglob("results.json"))]
    if not raw:
        raise FileNotFoundError(f"no results.json under {sweep_dir}")
    rows = []
    for r in raw:
        row = {
            k: r.get(k)
            for k in (
                "experiment",
                "divergence",
                "divergence_level",
                "reward",
                "seed",
                "n",
                "wall_s",
            )
        }
        row["noise"] = next(
            (
                float(o.split("=", 1)[1])
                for o in r.get("overrides", [])
                if o.split("=", 1)[0] in ("data.noise", "data.task.noise")
            ),
            0.0,
        )
        row.update({f"gold_{p}": v["mean"] for p, v in r["gold"].items()})
        row.update({f"div_{k}": r.get("div", {}).get(k, math.nan) for k in DIV_KEYS})
        rows.append(row)
    return pd.DataFrame(rows), raw


def objective_order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


def by_objective(df: pd.DataFrame, key: str = "divergence") -> pd.DataFrame:
    """Mean and s.e.m. over seeds of every numeric column, one row per `key` value."""
    numeric = [c for c in df.columns if c.startswith(("gold_", "div_"))]
    grouped = df.groupby(key)[numeric]
    mean, sem = grouped.mean(), grouped.sem(ddof=1).fillna(0.0)
    out = mean.join(sem, rsuffix="_sem")
    out["seeds"] = df.groupby(key)["seed"].nunique()
    return out.loc[objective_order(out.index)]


def mode_seeking_check(table: pd.DataFrame) -> dict:
    """The ablation's claim, with its numbers: reverse KL has higher precision and lower
    coverage and entropy than forward KL (means over seeds)."""
    if not {"forward_kl", "reverse_kl"} <= set(table.index):
        return {"checked": False}
    f, r = table.loc["forward_kl"], table.loc["reverse_kl"]
    parts = {
        "higher_precision": r.div_precision > f.div_precision,
        "lower_coverage": r.div_coverage < f.div_coverage,
        "lower_entropy": r.div_entropy < f.div_entropy,
    }
    numbers = {
        f"{k}_{name}": float(row[f"div_{k}"])
        for name, row in (("forward_kl", f), ("reverse_kl", r))
        for k in ("precision", "coverage", "entropy")
    }
    return {
        "checked": True,
        "holds": all(parts.values()),
        **{k: bool(v) for k, v in parts.items()},
        **numbers,
    }


def plot_precision_coverage(table: pd.DataFrame, ax) -> None:
    for name, row in table.iterrows():
        ax.errorbar(
            row.div_coverage,
            row.div_precision,
            xerr=row.div_coverage_sem,
            yerr=row.div_precision_sem,
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xlabel("coverage (demonstrator mass of modes produced)")
    ax.set_ylabel("precision (samples inside the support)")
    ax.set_title("mass-covering vs mode-seeking")
    ax.legend(fontsize=8)


def plot_bars(table: pd.DataFrame, columns: list[str], ax, title: str = "") -> None:
    width = 0.8 / max(1, len(table))
    x = np.arange(len(columns))
    for i, (name, row) in enumerate(table.iterrows()):
        ax.bar(
            x + i * width,
            [row[c] for c in columns],
            width,
            yerr=[row[f"{c}_sem"] for c in columns],
            capsize=3,
            label=name,
        )
    ax.set_xticks(
        x + width * (len(table) - 1) / 2,
        [c.replace("div_", "").replace("gold_", "gold ") for c in columns],
    )
    ax.set_title(title)
    ax.legend(fontsize=8)


def plot_overoptimisation(raw: list[dict], ax, key: str = "divergence") -> None:
    """Gold (solid, left axis) and proxy reward (dashed, right axis) against KL from the
    base policy: Best-of-n at the KL measured on its pool (`bon_kl`; the analytic bound
    log n - (n-1)/n for results that predate it), and the policy-gradient runs at their
    measured KL to the reference, step by step (seed 0 of each objective)."""
    proxy_ax = ax.twinx()
    seen = set()
    for r in sorted(raw, key=lambda r: (r.get(key) or "", r.get("seed", 0))):
        name = r.get(key)
        if name in seen:
            continue
        seen.add(name)
        curve = r["bon_curve"]
        ns = sorted(int(k) for k in curve)
        kl = [curve[str(k)].get("kl_mean", curve[str(k)]["kl_analytic"]) for k in ns]
        line = ax.plot(
            kl, [curve[str(k)]["gold_mean"] for k in ns], "-o", ms=3, label=f"BoN on {name}"
        )[0]
        proxy_ax.plot(
            kl, [curve[str(k)]["proxy_mean"] for k in ns], "--", color=line.get_color(), alpha=0.6
        )
        steps = [s for s in r.get("policy_curve", []) if "kl" in s]
        if steps:
            line = ax.plot(
                [s["kl"] for s in steps],
                [s["gold"] for s in steps],
                "-s",
                ms=3,
                label=f"policy gradient, {name}",
            )[0]
            proxy_ax.plot(
                [s["kl"] for s in steps], [s["reward"] for s in steps], ":", color=line.get_color()
            )
    ax.set_xlabel("KL from the base policy (nats)")
    ax.set_ylabel("gold reward (solid)")
    proxy_ax.set_ylabel("proxy reward (dashed: reward model; dotted: discriminator)")
    ax.set_title("over-optimisation")
    ax.legend(fontsize=7, loc="lower right")


def plot_bon_vs_n(raw: list[dict], ax, key: str = "reward") -> None:
    """Gold (solid) and proxy (dashed, right axis) of Best-of-n against n, one line per `key`."""
    proxy_ax = ax.twinx()
    for name in objective_order(r.get(key) for r in raw):
        curves = [r["bon_curve"] for r in raw if r.get(key) == name]
        ns = sorted(int(k) for k in curves[0])
        gold = np.mean([[c[str(k)]["gold_mean"] for k in ns] for c in curves], 0)
        proxy = np.mean([[c[str(k)]["proxy_mean"] for k in ns] for c in curves], 0)
        line = ax.plot(ns, gold, "-o", ms=3, label=str(name))[0]
        proxy_ax.plot(ns, proxy, "--", color=line.get_color(), alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("n (best of n)")
    ax.set_ylabel("gold reward (solid)")
    proxy_ax.set_ylabel("proxy reward (dashed)")
    ax.legend(fontsize=8)
