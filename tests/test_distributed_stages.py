"""Real training stages on two processes, through the project's trainer configs.

DDP and DeepSpeed ZeRO-2/3 (on CPU, with gloo) must give the loss curve of one process with the
same global batch, and leave a plain Hugging Face artifact (ZeRO partitions gathered) that the
later stages load like any other model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, compose_config

from afd.job import run_job
from afd.pipeline import Pipeline
from afd.tracking import Tracker

# name -> trainer overrides; fp32 everywhere, so runs differ by float summation order only.
TRAINERS = {
    "one_process": ["trainer=cpu"],
    "ddp": ["trainer=ddp"],
    "zero2": ["trainer=deepspeed_stage_2", "trainer.precision=32-true"],
    "zero3": ["trainer=deepspeed_stage_3", "trainer.precision=32-true"],
}


class RecordingTracker(Tracker):
    def __init__(self):
        self.rows: list[tuple[int | None, dict]] = []

    def log(self, metrics, step_key=None, step=None):
        self.rows.append((step, dict(metrics)))

    def curve(self, key: str) -> list[tuple[int, float]]:
        return [(step, m[key]) for step, m in self.rows if key in m]


def probe_logits(path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, model.config.vocab_size, (3, 12), generator=generator)
    with torch.no_grad():
        return model(input_ids=tokens).logits


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The pretrain stage (pi0) under each trainer: its logged loss curve and its artifact."""
    runs = {}
    for name, overrides in TRAINERS.items():
        cfg = compose_config([*TINY, *overrides, "trainer.log_every_n_steps=1"],
                             tmp_path_factory.mktemp(name))
        tracker = RecordingTracker()
        art = Pipeline(cfg, tracker).init_policy()
        runs[name] = (tracker.curve("pretrain/train/loss"), art)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3"])
def test_two_processes_give_the_one_process_loss_curve(pretrained, name):
    reference, _ = pretrained["one_process"]
    curve, art = pretrained[name]
    assert [s for s, _ in curve] == [s for s, _ in reference] and len(curve) >= 10
    ref_losses = np.array([v for _, v in reference])
    assert ref_losses[-3:].mean() < ref_losses[:3].mean() - 0.1  # it learns
    # Same global batches, gradients of the global token mean: equal up to float rounding.
    np.testing.assert_allclose([v for _, v in curve], ref_losses, rtol=2e-5, atol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3"])
def test_exported_artifact_is_the_one_process_model(pretrained, name):
    """The HF directory written from DDP or gathered from ZeRO shards reloads in fp32 and
    computes what the one-process model computes."""
    _, reference = pretrained["one_process"]
    _, art = pretrained[name]
    torch.testing.assert_close(probe_logits(art.path), probe_logits(reference.path),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_zero2_bf16_job_end_to_end(tiny_cfg):
    """A whole job under trainer=deepspeed_stage_2 as shipped (2 processes, bf16-mixed): every
    later stage loads the exported policies, and SFT moved pi0 towards the demonstrations."""
    from afd.batching import Lengths
    from afd.models import load_policy, load_tokenizer
    from afd.scoring import sequence_logprobs
    from afd.stages.data import DataDir

    cfg = tiny_cfg("trainer=deepspeed_stage_2")
    results = run_job(cfg)
    assert set(results["stages"].values()) == {"trained"}
    init, sft = results["artifacts"]["init"], results["artifacts"]["sft"]
    data = DataDir(results["artifacts"]["data"])
    rows = [{"prompt": e.prompt, "response": data.policy_view(e.response)}
            for e in data.examples("train")[:64]]
    tokenizer = load_tokenizer(sft)
    lengths = Lengths(**cfg.data.lengths)
    nll = {name: -sequence_logprobs(load_policy(path, tokenizer), tokenizer, rows, lengths).mean()
           for name, path in (("init", init), ("sft", sft))}
    assert nll["sft"] < nll["init"] - 0.05, nll
    assert 0.0 <= results["rm_accuracy"] <= 1.0
    assert -1.0 <= results["gold"]["bon"]["mean"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddp", "zero2"])
def test_adversarial_stage_trains_in_two_processes(tmp_path, name):
    """divergence=reverse_kl in two worker processes: the gold scorer is built in the workers,
    rank 0's history and logged curve come back to the job, and the policy is a plain HF model
    that later stages load."""
    from afd.stages.adversarial import read_history

    searchpath = f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]"
    cfg = compose_config([*TINY, *TRAINERS[name], "divergence=reverse_kl_tiny", searchpath,
                          "trainer.log_every_n_steps=1"], tmp_path)
    tracker = RecordingTracker()
    art = Pipeline(cfg, tracker).policy("policy")
    history = read_history(art.path)
    assert [r["step"] for r in history] == list(range(12))
    assert [r["step"] for r in history if "gold" in r] == [0, 4, 8, 11]
    assert all("policy_loss" in r for r in history[2:])  # after the 2 warm-up steps
    assert [s for s, _ in tracker.curve("adv/train/disc_loss")] == list(range(12))
    assert 0 <= art.metrics["final_disc_accuracy"] <= 1
    assert torch.isfinite(probe_logits(art.path)).all()

