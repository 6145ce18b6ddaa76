"""The reward-KL frontier of a sweep: gold reward at one sample against the KL each method spent
from pi_SFT, for Best-of-n on pi_SFT (from the forward_kl job's exact Best-of-n curve) and for
every trained policy (its `div/kl_sft`). Read by experiments/frontier_study.py and
notebooks/frontier_study.ipynb; the inputs are the jobs' results.json dicts.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SFT_JOB = "forward_kl"  # its policy is pi_SFT and its Best-of-n curve is Best-of-n on pi_SFT
BON_NS = (4, 16, 64)
DISTILLED_PREFIX = "bond_"
POLICY_METRICS = ("precision", "coverage", "entropy")
METRICS = ("gold", "kl_sft", *POLICY_METRICS)
POLICY_ORDER = ("bond_forward", "bond_reverse", "bond_jeffreys", "spin", "reverse_kl")
MARKERS = "os^vDPX*hp<>"


def job_name(r: dict) -> str:
    return f"divergence={r.get('divergence')} seed={r.get('seed')}"


def policy_point(r: dict, method: str, kl_sft: float | None) -> dict:
    div = r.get("div", {})
    if kl_sft is None:
        if "kl_sft" not in div:
            raise ValueError(
                f"results of {job_name(r)} have no div.kl_sft (the policy's KL to pi_SFT); "
                "rerun that job with this version of afd"
            )
        kl_sft = div["kl_sft"]
    point = {"method": method, "kind": "policy", "seed": r.get("seed")}
    point.update(gold=r["gold"]["policy"]["mean"], kl_sft=float(kl_sft))
    point.update({k: float(div.get(k, math.nan)) for k in POLICY_METRICS})
    return point


def bon_points(r: dict, ns) -> list[dict]:
    """Best-of-n on pi_SFT at each n of `ns`, from the forward_kl job's curve: its gold reward
    and the exact KL of the Best-of-n selection from the pool (`kl_mean`)."""
    curve = r.get("bon_curve", {})
    out = []
    for n in ns:
        if str(n) not in curve:
            have = sorted(int(k) for k in curve)
            raise ValueError(
                f"the Best-of-n curve of {job_name(r)} has no n={n} (it has {have}): run the "
                f"sweep with bon.n_max >= {max(ns)}"
            )
        point = {"method": f"bon_{n}", "kind": "bon", "seed": r.get("seed")}
        point.update(gold=curve[str(n)]["gold_mean"], kl_sft=curve[str(n)]["kl_mean"])
        point.update({k: math.nan for k in POLICY_METRICS})
        out.append(point)
    return out


def points(raw: list[dict], bon_ns=BON_NS) -> pd.DataFrame:
    """One row per method and seed: `gold` (gold reward of one sample, mean over held-out
    prompts), `kl_sft` (KL to pi_SFT in nats), precision, coverage and entropy.

    The forward_kl job gives `sft` (pi_SFT, KL 0: a policy's KL to itself is not measured) and
    `bon_<n>` for each n of `bon_ns` (no policy metrics: Best-of-n is not a trained policy);
    every other job gives one row named by its divergence."""
    rows = []
    for r in raw:
        if r.get("divergence") == SFT_JOB:
            rows.append(policy_point(r, "sft", r.get("div", {}).get("kl_sft", 0.0)))
            rows += bon_points(r, bon_ns)
        else:
            rows.append(policy_point(r, r.get("divergence"), None))
    df = pd.DataFrame(rows, columns=["method", "kind", "seed", *METRICS])
    if "sft" not in set(df.method):
        raise ValueError(
            f"no {SFT_JOB} job among {sorted({str(r.get('divergence')) for r in raw})}: the "
            f"pi_SFT and Best-of-n points come from it; add {SFT_JOB} to divergence="
        )
    twice = df[df.duplicated(["method", "seed"])]
    if len(twice):
        method, seed = twice.iloc[0][["method", "seed"]]
        raise ValueError(
            f"more than one job for method {method} seed {seed}: the frontier takes one job per "
            "divergence and seed (one toy_frontier sweep; pass a single sweep directory)"
        )
    return df


def method_order(names) -> list[str]:
    """pi_SFT, Best-of-n by n, the policies of POLICY_ORDER, then any other policy by name."""
    names = list(dict.fromkeys(names))
    bon = sorted((n for n in names if n.startswith("bon_")), key=lambda n: int(n[4:]))
    known = [n for n in POLICY_ORDER if n in names]
    rest = sorted(n for n in names if n != "sft" and n not in bon and n not in known)
    return ["sft"] * ("sft" in names) + bon + known + rest


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and s.e.m. over seeds (`<metric>_sem`, 0 for one seed) of every metric, one row per
    method in ORDER, with its `kind` and number of `seeds`."""
    grouped = df.groupby("method")[list(METRICS)]
    mean, sem = grouped.mean(), grouped.sem(ddof=1).fillna(0.0)
    out = mean.join(sem, rsuffix="_sem")
    out["seeds"] = df.groupby("method")["seed"].nunique()
    out["kind"] = df.groupby("method")["kind"].first()
    return out.loc[method_order(out.index)]


def closest_distilled(tab: pd.DataFrame, n: int = 16) -> dict:
    """The distilled policy (bond_*) whose gold reward is closest to Best-of-n's, with the
    numbers: gold and KL of both (means over seeds) and every distilled policy's gold gap."""
    target = f"bon_{n}"
    distilled = [m for m in tab.index if str(m).startswith(DISTILLED_PREFIX)]
    if target not in tab.index:
        raise ValueError(f"no {target} row in the table (it has {list(tab.index)})")
    if not distilled:
        raise ValueError(f"no distilled policy ({DISTILLED_PREFIX}*) in {list(tab.index)}")
    goal = tab.loc[target]
    gaps = {m: float(tab.loc[m, "gold"] - goal.gold) for m in distilled}
    best = min(gaps, key=lambda m: abs(gaps[m]))
    row = tab.loc[best]
    return {
        "target": target,
        "target_gold": float(goal.gold),
        "target_gold_sem": float(goal.gold_sem),
        "target_kl_sft": float(goal.kl_sft),
        "closest": best,
        "gold": float(row.gold),
        "gold_sem": float(row.gold_sem),
        "kl_sft": float(row.kl_sft),
        "gap": gaps[best],
        "gaps": gaps,
    }


def closest_statement(c: dict) -> str:
    n = c["target"].removeprefix("bon_")
    others = ", ".join(f"{m} {g:+.3f}" for m, g in c["gaps"].items() if m != c["closest"])
    return (
        f"{c['closest']} is the distilled policy closest to Best-of-{n}'s gold: "
        f"{c['gold']:.3f} +- {c['gold_sem']:.3f} against {c['target_gold']:.3f} +- "
        f"{c['target_gold_sem']:.3f} (gap {c['gap']:+.3f}), at KL {c['kl_sft']:.3f} nats from "
        f"pi_SFT against Best-of-{n}'s {c['target_kl_sft']:.3f}"
        + (f"; gold gaps of the others: {others}" if others else "")
    )


def plot_frontier(tab: pd.DataFrame, ax) -> None:
    """Gold reward against KL to pi_SFT, error bars over seeds on both axes, one marker per
    method; pi_SFT and the Best-of-n points joined as Best-of-n's curve (pi_SFT is n = 1)."""
    curve = tab[tab.index.isin(["sft"]) | (tab.kind == "bon")].sort_values("kl_sft")
    ax.plot(curve.kl_sft, curve.gold, "-", color="0.6", zorder=1, label="Best-of-n on pi_SFT")
    for i, (name, row) in enumerate(tab.iterrows()):
        ax.errorbar(
            row.kl_sft,
            row.gold,
            xerr=row.kl_sft_sem,
            yerr=row.gold_sem,
            marker=MARKERS[i % len(MARKERS)],
            linestyle="none",
            capsize=3,
            label=name,
            zorder=2,
        )
    ax.set_xlabel("KL to pi_SFT (nats)")
    ax.set_ylabel("gold reward of one sample")
    ax.set_title("reward-KL frontier")
    ax.legend(fontsize=7)


def plot_policy_metrics(tab: pd.DataFrame, axes) -> None:
    """One bar chart per metric of POLICY_METRICS on `axes`: the trained policies (Best-of-n
    has none), error bars over seeds."""
    policies = tab[tab.kind == "policy"]
    x = np.arange(len(policies))
    for ax, metric in zip(axes, POLICY_METRICS):
        ax.bar(x, policies[metric], yerr=policies[f"{metric}_sem"], capsize=3)
        ax.set_xticks(x, policies.index, rotation=45, ha="right")
        ax.set_title(metric + (" (nats)" if metric == "entropy" else ""))
