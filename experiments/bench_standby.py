"""What starting vLLM ahead saves a job: `+experiment=toy sampling=vllm` from an empty cache,
with `sampling.standby=false` (each job's first sampling stage starts a new engine process:
vLLM imported, then the policy loaded) and `sampling.standby=true` (the job starts that
process as it begins, so vLLM's import overlaps data, pi0 and pi_SFT, and the first sampling
stage only loads the policy), alternated, side by side in one run. Each job is then run again
on its full cache: every stage cached, so it should start no engine at all.

    python experiments/bench_standby.py                # 2 jobs of each, alternated
    python experiments/bench_standby.py --repeats 3 --override n=16

Prints each job's wall time, the seconds its sampling stages took (their manifests' build
times, engine start-up included) and its cached rerun's wall time, then the medians and their
ratios. On CPU a job keeps
its engine process between stages, so only the first sampling stage pays a start; on GPUs
every sampling stage starts one, and each of them opens a standby.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timed_runs import run_train, stage_times  # noqa: E402

SETTINGS = ("false", "true")


def job(standby: str, overrides: list[str], workdir: Path) -> tuple[float, float, float]:
    """(wall seconds, seconds of its sample stages) of one job from an empty cache, and the
    wall seconds of the same job again on the cache it filled."""
    args = ["+experiment=toy", "sampling=vllm", f"sampling.standby={standby}", *overrides]
    wall = run_train(args, workdir)
    sampling = stage_times(workdir / "cache").get("sample", 0.0)
    return wall, sampling, run_train(args, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--override", action="append", default=[], help="e.g. n=16")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    runs: dict[str, list[tuple[float, float, float]]] = {s: [] for s in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for standby in SETTINGS:
                workdir = Path(tmp) / f"{standby}-{i}"
                workdir.mkdir()
                wall, sampling, cached = job(standby, args.override, workdir)
                runs[standby].append((wall, sampling, cached))
                print(
                    f"standby={standby:<5} job {i}: wall {wall:6.1f} s, "
                    f"sample stages {sampling:6.1f} s, cached rerun {cached:5.1f} s",
                    flush=True,
                )
    medians = {s: [statistics.median(column) for column in zip(*r)] for s, r in runs.items()}
    for s, (wall, sampling, cached) in medians.items():
        print(
            f"median standby={s:<5}: wall {wall:6.1f} s, sample stages {sampling:6.1f} s, "
            f"cached rerun {cached:5.1f} s"
        )
    (off_wall, off_sampling, off_cached), (on_wall, on_sampling, on_cached) = medians.values()
    print(
        f"standby off / on: wall {off_wall / on_wall:.2f}x ({off_wall - on_wall:+.1f} s), "
        f"sample stages {off_sampling / on_sampling:.2f}x ({off_sampling - on_sampling:+.1f} s), "
        f"cached rerun {off_cached / on_cached:.2f}x ({off_cached - on_cached:+.1f} s)"
    )


if __name__ == "__main__":
    main()
