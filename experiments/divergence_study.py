"""The mass-covering vs mode-seeking study, run as users type it, timed, and summarised.

    python experiments/divergence_study.py [--seeds 0,1,2] [--divergences forward_kl,reverse_kl,js]
                                           [--sweep-dir DIR] [extra overrides ...]

Runs `python -m afd.train +experiment=toy_divergence -m divergence=... seed=...` in a fresh
working directory and stage cache (or, with --sweep-dir, only reads a finished sweep), then
prints: the wall time of the whole study against its 15-minute budget, the mean wall time
of a job per objective and its ratio to a forward-KL job (measured side by side in the one
run), the build time of each stage kind, the per-objective table (mean +- s.e.m. over
seeds) and whether reverse KL is mode-seeking next to forward KL (the claim, with numbers).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from timed_runs import stage_times, study_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUDGET_S = 15 * 60


def report(sweep: Path, wall: float | None, cache: Path | None) -> dict:
    from afd.reporting import analysis

    df, _ = analysis.load(sweep)
    table = analysis.by_objective(df)
    if wall is not None:
        print(
            f"cores: {os.cpu_count()}  jobs: {len(df)}  study wall: {wall:.1f} s = "
            f"{wall / 60:.1f} min ({wall / BUDGET_S:.2f} of the 15-minute budget)"
        )
    jobs = df.groupby("divergence")["wall_s"].mean()
    base = jobs.get("forward_kl")
    print(
        "mean job wall (s), side by side: "
        + ", ".join(
            f"{k} {v:.1f}" + (f" ({v / base:.2f}x forward_kl)" if base else "")
            for k, v in jobs.items()
        )
    )
    print(
        "(a job's wall counts the stages it built; later jobs of a seed reuse pi0, SFT and "
        "the reward model)"
    )
    if cache is not None:
        print(
            "stage build times (s): "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stage_times(cache).items()))
        )
    cols = [
        "gold_policy",
        "div_precision",
        "div_coverage",
        "div_entropy",
        "div_forward_kl",
        "div_reverse_kl",
        "gold_bon",
    ]
    print(f"\n{'objective':<22}" + "".join(f"{c.replace('div_', ''):>20}" for c in cols))
    for name, row in table.iterrows():
        print(
            f"{name + f' ({int(row.seeds)} seeds)':<22}"
            + "".join(f"{row[c]:>12.3f} +- {row[c + '_sem']:.3f}" for c in cols)
        )
    check = analysis.mode_seeking_check(table)
    print("\nreverse KL vs forward KL:", json.dumps(check))
    return check


if __name__ == "__main__":
    study_main(__doc__, "toy_divergence", "forward_kl,reverse_kl,js", report)
