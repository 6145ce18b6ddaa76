"""The default sweep on both sampling engines, into one stage cache: `+experiment=toy -m
n=4,16,64` as typed with `sampling=hf`, then with `sampling=vllm`.

    python experiments/engine_sweeps.py                 # in a temporary directory
    python experiments/engine_sweeps.py --workdir runs/engines --seed 1

Prints, per engine, the gold reward (mean +- standard error over held-out prompts) of pi0,
pi_SFT and Best-of-n at each n, the reward model's accuracy, and each sweep's wall time; then
which stage artifacts the two sweeps share and which each built for itself. Only the pools
an engine draws (and what is computed from them: scores, the reward model trained on them,
policy metrics) may differ; pi0 and pi_SFT must be shared. The second sweep (vLLM) reuses pi0
and pi_SFT from the first, so its wall time is not the engine's alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timed_runs import run_train  # noqa: E402

ENGINES = ("hf", "vllm")
NS = (4, 16, 64)


def sweep(engine: str, seed: int, workdir: Path) -> tuple[float, dict[int, dict]]:
    """Wall seconds and {n: results} of the default sweep on `engine`, in its own directory
    of `workdir` and the shared cache `workdir/cache`."""
    out = workdir / engine
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache").unlink(missing_ok=True)
    (out / "cache").symlink_to(workdir / "cache")  # run_train's cache: one for both engines
    ns = ",".join(map(str, NS))
    wall = run_train(
        ["+experiment=toy", f"sampling={engine}", f"seed={seed}", "-m", f"n={ns}"], out
    )
    results = [json.loads(p.read_text()) for p in (out / "multirun").rglob("results.json")]
    return wall, {r["n"]: r for r in results}


def stat(d: dict) -> str:
    return f"{d['mean']:.3f} +- {d['sem']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        (workdir / "cache").mkdir(parents=True, exist_ok=True)
        runs = {engine: sweep(engine, args.seed, workdir) for engine in ENGINES}
        print(f"+experiment=toy -m n={','.join(map(str, NS))}, seed {args.seed}\n")
        bon_columns = " | ".join(f"BoN n={n}" for n in NS)
        print(f"| engine | gold pi0 | gold pi_SFT | {bon_columns} | RM accuracy | sweep wall |")
        print("|---" * (len(NS) + 5) + "|")
        for engine, (wall, results) in runs.items():
            gold = results[NS[-1]]["gold"]
            bon = " | ".join(stat(results[n]["gold"]["bon"]) for n in NS)
            accuracy = results[NS[0]]["rm_accuracy"]
            print(
                f"| {engine} | {stat(gold['init'])} | {stat(gold['sft'])} | {bon} | "
                f"{accuracy:.3f} | {wall:.0f} s |"
            )
        # an artifact is its stage folder and key (each engine reaches the cache by its own path)
        artifacts = {
            e: {label: Path(p).parts[-2:] for label, p in runs[e][1][NS[-1]]["artifacts"].items()}
            for e in ENGINES
        }
        hf, vllm = artifacts["hf"], artifacts["vllm"]
        shared = sorted(k for k in hf if vllm.get(k) == hf[k])
        apart = sorted(k for k in hf if k not in shared)
        print(f"\nshared by both engines ({len(shared)}): {', '.join(shared)}")
        print(f"built per engine ({len(apart)}): {', '.join(apart)}")
        for engine, (_, results) in runs.items():
            gold = results[NS[-1]]["gold"]
            ordered = gold["init"]["mean"] < gold["sft"]["mean"] and all(
                results[n]["gold"]["bon"]["mean"] > gold["sft"]["mean"] for n in NS
            )
            print(f"{engine}: pi0 < pi_SFT < Best-of-n at every n: {ordered}")


if __name__ == "__main__":
    main()
