"""What running a training stage in worker processes costs, against training in the job's process.

Builds the pretrain stage (pi0 of the synthetic task) from scratch under each trainer config,
one after the other in this run, and prints wall seconds, the final training loss and the
ratio to in-process training. `ddp_1` isolates the fixed cost of a worker process (one DDP
process); the 2-process rows add the process group and, for ZeRO, DeepSpeed's engine. Rerun:

    python experiments/bench_stage_launch.py [--size tiny|toy] [--repeats 2]

On a machine shared with other work the seconds inflate; the ratios, measured side by side,
are the figures to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

CONFIGS = {
    "in_process": ["trainer=cpu"],
    "ddp_1": ["trainer=ddp", "trainer.devices=1"],
    "ddp_2": ["trainer=ddp"],
    "zero2_2": ["trainer=deepspeed_stage_2", "trainer.precision=32-true"],
    "zero3_2": ["trainer=deepspeed_stage_3", "trainer.precision=32-true"],
}
SIZES = {
    "tiny": None,  # tests/conftest.py TINY: 19 steps of a 1-layer, 32-wide GPT-2
    "toy": ["pretrain.schedule.epochs=0.25", "logger=none", "progress=false"],  # config.yaml model
}


def build_once(overrides: list[str], size: str) -> tuple[float, float]:
    from conftest import TINY, compose_config

    from afd.pipeline.graph import Pipeline
    from afd.reporting.tracking import Tracker

    base = TINY if SIZES[size] is None else SIZES[size]
    with tempfile.TemporaryDirectory() as cache:
        cfg = compose_config([*base, *overrides], Path(cache))
        pipe = Pipeline.from_config(cfg, Tracker())
        pipe.corpus()  # not part of the stage
        start = time.perf_counter()
        art = pipe.init_policy()
        seconds = time.perf_counter() - start
        return seconds, art.metrics.get("pretrain/train/loss", float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(CONFIGS))
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in args.only}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits all alike
        for name in args.only:
            results[name].append(build_once(CONFIGS[name], args.size))
    base = (
        statistics.median(s for s, _ in results["in_process"]) if "in_process" in results else None
    )
    print(f"\npretrain stage, size={args.size}, median of {args.repeats} (seconds, wall)")
    print(f"{'trainer':<12} {'seconds':>8} {'x in-process':>13} {'final loss':>11}")
    for name, runs in results.items():
        seconds = statistics.median(s for s, _ in runs)
        ratio = f"{seconds / base:.2f}" if base else "-"
        print(f"{name:<12} {seconds:8.1f} {ratio:>13} {runs[-1][1]:11.4f}")


if __name__ == "__main__":
    main()
