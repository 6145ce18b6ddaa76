"""Wall time of the default sweep against one job, measured side by side in one run.

    python experiments/bench_toy_sweep.py [--repeats 1] [extra overrides ...]

Runs, each in a fresh working directory and cache: (1) one job, `python -m afd.train
+experiment=toy n=64`; (2) the sweep `python -m afd.train +experiment=toy -m n=4,16,64`.
Prints both wall times, their ratio (the sweep should cost well under 3x one job, since
it trains every stage once) and the per-stage build times of the sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from timed_runs import run_train, stage_times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    singles, sweeps = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            singles.append(
                run_train(["+experiment=toy", "n=64", "progress=false", *args.overrides], Path(d))
            )
        with tempfile.TemporaryDirectory() as d:
            sweeps.append(
                run_train(
                    ["+experiment=toy", "-m", "n=4,16,64", "progress=false", *args.overrides],
                    Path(d),
                )
            )
            stages = stage_times(Path(d) / "cache")
            results = sorted(Path(d).rglob("results.json"))
            gold = {
                json.loads(p.read_text())["n"]: json.loads(p.read_text())["gold"] for p in results
            }
    single, sweep = min(singles), min(sweeps)
    print(f"cores: {os.cpu_count()}  torch threads: default  repeats: {args.repeats}")
    print(f"one job (n=64)          : {single:7.1f} s")
    print(f"sweep (n=4,16,64)       : {sweep:7.1f} s")
    print(f"sweep / one job         : {sweep / single:7.2f}x   (3 independent jobs would be 3.00x)")
    print(
        "stage build times in the sweep (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items()))
    )
    for n in sorted(gold):
        g = gold[n]
        print(
            f"n={n:<3} gold: init {g['init']['mean']:.3f}  sft {g['sft']['mean']:.3f}  "
            f"demo {g['demo']['mean']:.3f}  bon {g['bon']['mean']:.3f} +- {g['bon']['sem']:.3f}"
        )


if __name__ == "__main__":
    main()
