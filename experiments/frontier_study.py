"""The reward-KL frontier study, run as users type it, timed, and summarised.

    python experiments/frontier_study.py [--seeds 0,1,2] [--divergences forward_kl,bond_forward,...]
                                         [--sweep-dir DIR] [extra overrides ...]

Runs `python -m afd.train +experiment=toy_frontier -m divergence=... seed=...` in a fresh
working directory and stage cache (or, with --sweep-dir, only reads a finished sweep), then
prints: the wall time of the whole study, the mean wall time of a job per method, the build
time of each stage kind, the frontier table (gold reward of one sample, KL to pi_SFT,
precision, coverage, entropy; mean +- s.e.m. over seeds) for pi_SFT, Best-of-n on pi_SFT and
every trained policy, and which distilled policy comes closest to Best-of-16's gold reward.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from timed_runs import stage_times, study_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DIVERGENCES = "forward_kl,bond_forward,bond_reverse,bond_jeffreys,spin,reverse_kl"


def print_table(tab) -> None:
    from afd.reporting.frontier import METRICS

    print(f"\n{'method':<24}" + "".join(f"{c:>20}" for c in METRICS))
    for name, row in tab.iterrows():
        cells = "".join(
            f"{'-':>20}" if math.isnan(row[c]) else f"{row[c]:>12.3f} +- {row[c + '_sem']:.3f}"
            for c in METRICS
        )
        seeds = f"{int(row.seeds)} seed" + "s" * (row.seeds != 1)
        print(f"{name + f' ({seeds})':<24}" + cells)


def report(sweep: Path, wall: float | None, cache: Path | None) -> dict:
    from afd.reporting import analysis, frontier
    from afd.reporting.summary import failed_jobs

    for line in failed_jobs(sweep):
        print("failed job, left out:", line)
    df, raw = analysis.load(sweep)
    if wall is not None:
        print(
            f"cores: {os.cpu_count()}  jobs: {len(df)}  "
            f"study wall: {wall:.1f} s = {wall / 60:.1f} min"
        )
    jobs = df.groupby("divergence")["wall_s"].mean()
    print("mean job wall (s): " + ", ".join(f"{k} {v:.1f}" for k, v in jobs.items()))
    print(
        "(a job's wall counts the stages it built; later jobs of a seed reuse pi0, SFT, the "
        "reward model and pi_SFT's samples)"
    )
    if cache is not None:
        print(
            "stage build times (s): "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stage_times(cache).items()))
        )
    tab = frontier.table(frontier.points(raw))
    print_table(tab)
    print("(gold: one sample; kl_sft: nats from pi_SFT; Best-of-n has no policy metrics)")
    closest = frontier.closest_distilled(tab, 16)
    print("\n" + frontier.closest_statement(closest))
    print("closest distilled policy:", json.dumps(closest))
    return closest


if __name__ == "__main__":
    study_main(__doc__, "toy_frontier", DIVERGENCES, report)
