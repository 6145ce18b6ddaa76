"""What the benchmark scripts share: run `python -m afd.train` as a user types it, in its own
working directory and stage cache, timed; and read the build time of each stage kind back
from that cache's manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_train(args: list[str], workdir: Path) -> float:
    """Wall seconds of `python -m afd.train ARGS` run in `workdir` with the cache under
    `workdir/cache` and W&B offline unless WANDB_MODE says otherwise; exits on failure with
    the end of its stderr."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        **os.environ,
        "AFD_CACHE_DIR": str(workdir / "cache"),
        "PYTHONPATH": path,
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "afd.train", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed: python -m afd.train {' '.join(args)}\n{proc.stderr[-4000:]}")
    return wall


def stage_times(cache: Path) -> dict[str, float]:
    """Seconds spent building each stage kind, summed over the artifacts in `cache`."""
    out: dict[str, float] = {}
    for manifest in cache.glob("*/*/manifest.json"):
        m = json.loads(manifest.read_text())
        out[m["stage"]] = out.get(m["stage"], 0.0) + m["build_s"]
    return out


def run_study(
    experiment: str, divergences: str, seeds: str, overrides: list[str], workdir: Path
) -> tuple[float, Path]:
    """Wall seconds and sweep directory of `+experiment=EXPERIMENT -m divergence=... seed=...`
    run in `workdir`."""
    args = [
        f"+experiment={experiment}",
        "-m",
        f"divergence={divergences}",
        f"seed={seeds}",
        "progress=false",
        *overrides,
    ]
    print("python -m afd.train " + " ".join(args), flush=True)
    wall = run_train(args, workdir)
    (sweep,) = {p.parent.parent for p in (workdir / "multirun").glob("*/*/*/results.json")}
    return wall, sweep


def study_main(doc: str, experiment: str, divergences: str, report) -> None:
    """The command line of a study script: run the sweep over divergences and seeds (or read a
    finished one with --sweep-dir) and print `report(sweep, wall, cache)`."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--divergences", default=divergences)
    parser.add_argument(
        "--sweep-dir", type=Path, help="summarise a finished sweep instead of running one"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the run here (default: a temporary directory)"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = parser.parse_args()
    if args.sweep_dir:
        report(args.sweep_dir, None, None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        wall, sweep = run_study(experiment, args.divergences, args.seeds, args.overrides, workdir)
        report(sweep, wall, workdir / "cache")
