"""A catalogue of bad inputs, each run as the command line runs it: one clear line that names
the key (or file and line) and what to do, exit code 2 for a bad command (checked before any
job starts) or 1 for a job that failed on its data, and nothing computed either way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from conftest import TINY

TOY = [o for o in TINY if not o.startswith(("logger=", "progress=", "reward.num_prompts"))]
TOY += ["rm.num_prompts=60", "progress=false"]


@pytest.fixture
def command(tmp_path, monkeypatch, capsys):
    """Runs `python -m afd.train ARGS` in this process; returns (exit code, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    from afd.cli import train
    from afd.pipeline import outcome

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFD_CACHE_DIR", str(tmp_path / "cache"))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}

    def run(*args: str, logger: str = "logger=none") -> tuple[int, str]:
        GlobalHydra.instance().clear()
        train._checked.clear()
        outcome.clear()
        monkeypatch.setattr(sys, "argv", ["afd.train", *args, *([logger] if logger else [])])
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            train.main()
            raise SystemExit(0)
        return done.value.code, capsys.readouterr().err

    yield run
    for s, h in handlers.items():
        signal.signal(s, h)


def artifacts(tmp_path: Path) -> list[str]:
    """Stage artifacts the command left in its cache."""
    return sorted(str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("manifest.json"))


# (overrides, what the one line says): all found before any job starts.
BAD_COMMANDS = [
    (["n=0"], "n must be in [1, 8], got 0"),
    (["n=100"], "n must be in [1, 8], got 100 (raise bon.n_max"),
    (["-m", "n=4,100"], "n must be in [1, 8], got 100 (raise bon.n_max to sample a larger pool"),
    (["n=4,16"], "Ambiguous value for argument 'n=4,16'"),
    (["bon.n_max=0"], "bon.n_max must be >= 1"),
    (["seed=-1"], "seed must be >= 0, got -1"),
    (["sft.optim.lr=abc"], "sft.optim.lr must be a number, got 'abc'"),
    (["sft.optim.lr=-1"], "sft.optim.lr must be > 0, got -1"),
    (["sft.schedule.epochs=0"], "sft.schedule.epochs must be > 0, got 0"),
    (["sft.schedule.batch_size=0"], "sft.schedule.batch_size must be >= 1, got 0"),
    (["sft.val_fraction=1.0"], "sft.val_fraction must be in [0, 1), got 1.0"),
    (["sft.num_demos=0"], "sft.num_demos must be null or an integer >= 1, got 0"),
    (["rm.num_prompts=0"], "reward.num_prompts must be null or an integer >= 1, got 0 (set by rm"),
    (["sampling.top_k=-5"], "sampling.top_k must be an integer >= 0 (0: off), got -5"),
    (["sampling.top_p=0"], "sampling.top_p must be in (0, 1], got 0"),
    (["sampling.temperature=-1"], "sampling.temperature must be >= 0, got -1"),
    (["sampling.temperature=abc"], "sampling.temperature must be a number, got 'abc'"),
    (["sampling.stop_strings=[1,2]"], "sampling.stop_strings must be a list of non-empty strings"),
    (["sampling.max_new_tokens=0"], "sampling.max_new_tokens must be >= 1, got 0"),
    (["sampling.batch_size=0"], "sampling.batch_size must be >= 1, got 0"),
    (["model.n_positions=8"], "model.n_positions is 8 tokens, fewer than"),
    (["cache=no"], "cache must be true or false, got 'no'"),
    (["cache=maybe"], "cache must be true or false, got 'maybe'"),
    (["eval.coverage_samples=100"], "eval.coverage_samples must be in [1, 8], got 100"),
    (["reward=nope"], "Could not find 'reward/nope'"),
    (["no_such_key=1"], "Could not override 'no_such_key'. To append to your config use +"),
    (["data.task.noise=2"], "data.task.noise must lie in [0, 1], got 2"),
    (["divergence=reverse_kl", "divergence.samples_per_prompt=1"], "samples_per_prompt must be"),
    (["trainer=ddp", "trainer.devices=3"], "is the global batch and must be divisible"),
    (["+data.lengths.prompt_truncation=middle"], "data.lengths.prompt_truncation must be one of"),
    (["reward=ensemble", "reward.size=1"], "reward.size must be an integer >= 2, got 1"),
    (["+cluster=slurm"], "+cluster=slurm submits the jobs of a sweep: add -m"),
    (["cache_dir=/dev/null/cache"], "cache_dir=/dev/null/cache: /dev/null is a file"),
    (["cache_dir=/proc/afd-cache"], "cache_dir=/proc/afd-cache: /proc is not writable"),
    (["sampling=vllm", "model.n_head=8"], "(model.n_embd / model.n_head): use sampling=hf"),
    (["sampling=vllm", "sampling.tensor_parallel_size=0"], "sampling.tensor_parallel_size must be"),
    (["sampling=vllm", "sampling.tensor_parallel_size=2"], "on CPU the vLLM engine runs in one"),
    (
        ["sampling=vllm", "sampling.kv_cache_gib=-1"],
        "sampling.kv_cache_gib must be > 0, got -1",
    ),
    (["sampling=vllm", "sampling.standby=maybe"], "sampling.standby must be true or false"),
]


@pytest.mark.parametrize(
    "overrides, message", BAD_COMMANDS, ids=[" ".join(o) for o, _ in BAD_COMMANDS]
)
def test_a_bad_command_is_one_line_before_any_work(command, tmp_path, overrides, message):
    code, err = command(*TOY, *overrides)
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err and err.startswith("afd: ")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "outputs").exists()


@pytest.fixture
def no_slurm(monkeypatch):
    keep = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "sbatch").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(keep))
    assert shutil.which("sbatch") is None


def test_a_cluster_sweep_without_slurm(command, tmp_path, no_slurm):
    code, err = command(*TOY, "+cluster=slurm", "-m", "n=2,4")
    assert code == 2 and "there is no SLURM here (no `sbatch` on PATH)" in err
    assert not artifacts(tmp_path)


def test_an_online_run_without_a_login(command, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    code, err = command(*TOY, "logger=wandb", "logger.mode=online", logger="")
    assert code == 2 and "logger.mode=online, but there is no W&B login here" in err


@pytest.fixture
def model_dirs(tmp_path, tiny_hh_models):
    """A policy directory without its tokenizer files, beside the complete ones."""
    bare = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_hh_models["policy"], bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / name).unlink(missing_ok=True)
    return {**tiny_hh_models, "bare": bare}


HH = ["+experiment=harmless", "trainer=cpu", "progress=false"]


def test_model_and_judge_directories_are_checked(command, tmp_path, model_dirs):
    missing = tmp_path / "nowhere" / "model"
    code, err = command(*HH, f"model.name_or_path={missing}")
    assert code == 2 and f"model.name_or_path={missing}: no such directory" in err
    code, err = command(*HH, f"model.name_or_path={model_dirs['bare']}")
    assert code == 2 and "no tokenizer files in it" in err
    code, err = command(
        *HH, f"model.name_or_path={model_dirs['policy']}", f"gold.name_or_path={missing}"
    )
    assert code == 2 and f"gold.name_or_path={missing}: no such directory" in err
    assert not artifacts(tmp_path)


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_jsonl_data_needs_its_file(command, tmp_path):
    code, err = command("data=jsonl")
    assert code == 2 and "data.task.train is not set: give a JSONL(.gz) file" in err


def test_the_toy_judge_refuses_other_data(command, tmp_path, model_dirs):
    demos = write_jsonl(tmp_path / "demos.jsonl", [b'{"prompt": "hi", "response": "yo"}'] * 4)
    code, err = command(
        "data=jsonl",
        f"data.task.train={demos}",
        "model=gpt2",
        f"model.name_or_path={model_dirs['policy']}",
    )
    assert code == 2 and "gold=toy scores only the synthetic task (data=toy)" in err


def jsonl_job(demos: Path, models: dict) -> list[str]:
    return [
        "data=jsonl",
        f"data.task.train={demos}",
        "data.task.heldout_fraction=0.5",
        "model=gpt2",
        f"model.name_or_path={models['policy']}",
        "gold=gpt2_large_harmless",
        f"gold.name_or_path={models['gold']}",
        "trainer=cpu",
        "progress=false",
        "data.lengths.max_prompt_tokens=64",
        "data.lengths.max_response_tokens=48",
        "data.max_new_tokens=24",
    ]


def test_non_utf8_data_names_its_file_and_line(command, tmp_path, model_dirs):
    demos = write_jsonl(
        tmp_path / "demos.jsonl",
        [b'{"prompt": "hi", "response": "yo"}', b'{"prompt": "caf\xe9", "response": "yo"}'],
    )
    code, err = command(*jsonl_job(demos, model_dirs))
    assert code == 1, err
    assert f"{demos}:2: not UTF-8 text (byte 0xe9 at column 16)" in err
    assert not artifacts(tmp_path)
    (failure,) = (tmp_path / "outputs").rglob("failure.json")
    assert json.loads(failure.read_text())["kind"] == "input"


def test_responses_all_too_long_for_training(command, tmp_path, model_dirs):
    rows = [
        json.dumps({"prompt": f"\n\nHuman: q{i}\n\nAssistant:", "response": "word " * 60}).encode()
        for i in range(12)
    ]
    demos = write_jsonl(tmp_path / "demos.jsonl", rows)
    code, err = command(
        *jsonl_job(demos, model_dirs),
        "data.lengths.max_response_tokens=16",
        "data.lengths.long_responses=drop",
    )
    assert code == 1 and "no training rows left: all" in err
    assert "data.lengths.long_responses=drop" in err
    assert [a.split("/")[1] for a in artifacts(tmp_path)] == ["data"]  # no model was trained
