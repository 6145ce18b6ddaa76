"""The command line as users type it, run as subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY

from afd.cli.train import multirun_flags_first


def run_cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AFD_CACHE_DIR": str(cwd / "cache"),
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "afd.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sweep_dir(cwd: Path) -> Path:
    summaries = list((cwd / "multirun").rglob("summary.md"))
    assert len(summaries) == 1, summaries
    return summaries[0].parent


def test_multirun_flag_moves_to_the_front():
    argv = ["afd/train.py", "+experiment=toy", "-m", "n=4,16,64"]
    assert multirun_flags_first(argv) == ["afd/train.py", "-m", "+experiment=toy", "n=4,16,64"]
    assert multirun_flags_first(["x", "n=1"]) == ["x", "n=1"]
    assert multirun_flags_first(["x", "a=1", "--multirun", "b=1,2"]) == [
        "x",
        "--multirun",
        "a=1",
        "b=1,2",
    ]


@pytest.mark.slow
def test_sweep_in_typed_order_reuses_stages_and_summarises(tmp_path):
    proc = run_cli(
        [
            "+experiment=toy",
            "-m",
            "n=2,4,8",
            *(
                o
                for o in TINY
                if not o.startswith(("reward.num_prompts", "n=", "eval.init", "logger", "progress"))
            ),
            "logger=csv",
            "progress=false",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    results = [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]
    assert sorted(r["n"] for r in results) == [2, 4, 8]
    by_n = {r["n"]: r for r in results}
    assert "trained" in by_n[2]["stages"].values()
    assert set(by_n[4]["stages"].values()) == {"cached"} == set(by_n[8]["stages"].values())
    assert (proc.stdout + proc.stderr).count("reusing cached artifact") >= 2 * len(
        by_n[2]["stages"]
    )
    assert (sweep / "summary.csv").exists() and (sweep / "gold_vs_n.png").stat().st_size > 1000
    assert "| toy |" in (sweep / "summary.md").read_text()
    assert all((p.parent / "metrics.csv").exists() for p in sweep.rglob("results.json"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["n=65"], "n must be in [1, 64], got 65 (raise bon.n_max"),
        (["reward=nope"], "Could not find 'reward/nope'"),
        (["no_such_key=1"], "no_such_key"),
    ],
)
def test_bad_input_fails_fast_and_names_the_key(tmp_path, args, message):
    proc = run_cli([*args, "logger=none"], tmp_path, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert not (tmp_path / "cache").exists()  # failed before any stage ran


@pytest.mark.slow
def test_the_literal_default_sweep(tmp_path, toy_cache):
    """`python -m afd.train +experiment=toy -m n=4,16,64` exactly as typed, W&B offline."""
    env_keys = ("WANDB_MODE", "WANDB_API_KEY")
    saved = {k: os.environ.pop(k, None) for k in env_keys}
    try:
        env = {
            **os.environ,
            "AFD_CACHE_DIR": str(toy_cache),
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "HOME": str(tmp_path),
        }  # no ~/.netrc: W&B goes offline
        proc = subprocess.run(
            [sys.executable, "-m", "afd.train", "+experiment=toy", "-m", "n=4,16,64"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    sweep = sweep_dir(tmp_path)
    results = {r["n"]: r for r in (json.loads(p.read_text()) for p in sweep.rglob("results.json"))}
    assert sorted(results) == [4, 16, 64]
    assert set(results[16]["stages"].values()) == {"cached"} == set(results[64]["stages"].values())
    gold = results[64]["gold"]
    # the method works on the synthetic task: pi0 < pi_SFT < Best-of-n with the IRL reward
    assert gold["init"]["mean"] < gold["sft"]["mean"]
    for n in (4, 16, 64):
        assert results[n]["gold"]["bon"]["mean"] > results[n]["gold"]["sft"]["mean"] + 0.05
    assert results[4]["rm_accuracy"] > 0.7 and results[4]["rm_spearman_gold"] > 0.3
    runs = list(sweep.rglob("offline-run-*"))
    assert len(runs) == 3, runs  # one offline W&B run per job
