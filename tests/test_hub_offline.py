"""Without network, a paper experiment fails in seconds and says what to point at local files."""

import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, compose_config
from huggingface_hub import constants

from afd.core.hub import HubUnavailable, probe
from afd.pipeline.preflight import hub_resources, preflight
from afd.pipeline.validate import validate


def parts_of(cfg) -> list:
    """The parts of a job that may load something from the Hub."""
    return validate(cfg).hub_users()


NEEDED = [
    "'Anthropic/hh-rlhf'",
    "data.task.path=",
    "'gpt2'",
    "model.name_or_path=",
    "'weqweasdas/RM-Gemma-7B'",
    "gold.name_or_path=",
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.fixture
def online_mode(monkeypatch, tmp_path):
    """As on a fresh machine with no cache: offline mode off, an empty HF cache."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored after the test; go_offline() sets it
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    from datasets import config

    monkeypatch.setattr(config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(config, "HF_HUB_OFFLINE", False)


def test_unreachable_hub_fails_at_once_naming_each_resource(online_mode, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    cfg = compose_config(["+experiment=helpful"])
    assert [r.repo_id for r in hub_resources(parts_of(cfg))] == [
        "Anthropic/hh-rlhf",
        "gpt2",
        "weqweasdas/RM-Gemma-7B",
    ]
    start = time.monotonic()
    with pytest.raises(HubUnavailable) as err:
        preflight(parts_of(cfg))
    assert time.monotonic() - start < 2.0
    assert all(s in str(err.value) for s in NEEDED), str(err.value)
    assert (
        constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    )  # loaders will not retry


def test_silent_endpoint_costs_one_short_timeout(online_mode, monkeypatch):
    """A host that accepts connections and never answers (a blackholed proxy)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        assert "timed out" in probe(url, timeout_s=1.0)
        assert time.monotonic() - start < 2.5
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(HubUnavailable, match="timed out"):
            preflight(parts_of(compose_config(["+experiment=harmless"])), timeout_s=1.0)


def test_local_paths_need_no_hub(online_mode, monkeypatch, tiny_hh_models):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    cfg = compose_config(
        [
            "+experiment=harmless",
            f"data.task.path={ROOT}",
            f"model.name_or_path={tiny_hh_models['policy']}",
            f"gold.name_or_path={tiny_hh_models['gold']}",
            "data.lengths.max_prompt_tokens=96",  # the tiny policy's context is 256 tokens
        ]
    )
    assert hub_resources(parts_of(cfg)) == []
    preflight(parts_of(cfg))  # nothing to fetch: no probe, no error
    assert not constants.HF_HUB_OFFLINE


@pytest.mark.parametrize("offline_env", [None, "1"])
def test_the_experiment_command_fails_within_seconds_offline(tmp_path, offline_env):
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    }
    env.update(
        {
            "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
            "HF_HOME": str(tmp_path / "hf"),
            "AFD_CACHE_DIR": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT),
            "WANDB_MODE": "disabled",
        }
    )
    if offline_env:
        env["HF_HUB_OFFLINE"] = offline_env
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "afd.train", "+experiment=helpful", "logger=none"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cannot reach the Hugging Face Hub" in out and all(s in out for s in NEEDED), out[-3000:]
    assert ("HF_HUB_OFFLINE is set" in out) == bool(offline_env)
    assert not (tmp_path / "cache").exists()  # no stage started
    # Interpreter start and imports take most of this (several seconds on a busy 2-core box);
    # the check itself takes well under a second (the tests above).
    assert wall < 60, wall
