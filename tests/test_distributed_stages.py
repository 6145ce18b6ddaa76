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

from afd.pipeline.graph import Pipeline
from afd.pipeline.job import run_job
from afd.reporting.tracking import Tracker

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
        cfg = compose_config(
            [*TINY, *overrides, "trainer.log_every_n_steps=1"], tmp_path_factory.mktemp(name)
        )
        tracker = RecordingTracker()
        art = Pipeline.from_config(cfg, tracker).init_policy()
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
    torch.testing.assert_close(
        probe_logits(art.path), probe_logits(reference.path), rtol=1e-4, atol=1e-4
    )


@pytest.mark.slow
def test_zero2_bf16_job_end_to_end(tiny_cfg):
    """A whole job under trainer=deepspeed_stage_2 as shipped (2 processes, bf16-mixed): every
    later stage loads the exported policies, and SFT moved pi0 towards the demonstrations."""
    from afd.models.batching import Lengths
    from afd.models.loading import load_policy
    from afd.models.scoring import sequence_logprobs
    from afd.models.tokenizers import load_tokenizer
    from afd.tasks.data_dir import DataDir

    cfg = tiny_cfg("trainer=deepspeed_stage_2")
    results = run_job(cfg)
    assert set(results["stages"].values()) == {"trained"}
    init, sft = results["artifacts"]["init"], results["artifacts"]["sft"]
    data = DataDir(results["artifacts"]["data"])
    rows = [
        {"prompt": e.prompt, "response": data.policy_view(e.response)}
        for e in data.examples("train")[:64]
    ]
    tokenizer = load_tokenizer(sft)
    lengths = Lengths(**cfg.data.lengths)
    nll = {
        name: -sequence_logprobs(load_policy(path, tokenizer), tokenizer, rows, lengths).mean()
        for name, path in (("init", init), ("sft", sft))
    }
    assert nll["sft"] < nll["init"] - 0.05, nll
    assert 0.0 <= results["rm_accuracy"] <= 1.0
    assert -1.0 <= results["gold"]["bon"]["mean"] <= 1.0


@pytest.mark.slow
def test_adversarial_stage_trains_in_two_processes(tmp_path):
    """divergence=reverse_kl in two DDP worker processes (policy and discriminator in one module,
    updated in turn by manual optimisation): the gold scorer is built in the workers, rank 0's
    history and logged curve come back to the job, and the policy is a plain HF model that later
    stages load. The same module under DeepSpeed ZeRO-2: tests/test_adversarial.py."""
    from afd.core.artifacts import read_history

    searchpath = f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]"
    cfg = compose_config(
        [
            *TINY,
            *TRAINERS["ddp"],
            "divergence=reverse_kl_tiny",
            searchpath,
            "trainer.log_every_n_steps=1",
        ],
        tmp_path,
    )
    tracker = RecordingTracker()
    art = Pipeline.from_config(cfg, tracker).policy("policy")
    history = read_history(art.path)
    assert [r["step"] for r in history] == list(range(12))
    assert [r["step"] for r in history if "gold" in r] == [0, 4, 8, 11]
    assert all("policy_loss" in r for r in history[2:])  # after the 2 warm-up steps
    assert [s for s, _ in tracker.curve("adv/train/disc_loss")] == list(range(12))
    assert 0 <= art.metrics["final_disc_accuracy"] <= 1
    assert torch.isfinite(probe_logits(art.path)).all()


@pytest.mark.slow
def test_lora_sft_under_zero2_in_two_processes(tiny_hh_models, tmp_path):
    """LoRA and gradient checkpointing (the model options) travel to the workers; the adapters
    of the ZeRO-2 run are gathered and merged into a plain model that matches one process."""
    from conftest import stage_context
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from afd.core.jsonl import write_jsonl
    from afd.models.batching import Lengths
    from afd.models.options import LoraSpec, ModelOptions
    from afd.recipes.sft import SFT
    from afd.runtime.launch import StageLauncher
    from afd.runtime.optim import OptimConfig
    from afd.runtime.trainer import Schedule
    from afd.tasks.records import Example

    # Without dropout, whose masks differ between one process and two, the runs agree.
    policy = tmp_path / "policy"
    AutoModelForCausalLM.from_pretrained(
        tiny_hh_models["policy"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    ).save_pretrained(policy)
    AutoTokenizer.from_pretrained(tiny_hh_models["policy"]).save_pretrained(policy)
    data = tmp_path / "data"
    data.mkdir()
    prompt = "\n\nHuman: How do I bake bread?\n\nAssistant:"
    demos = [
        Example(f"d{i}", prompt.replace("bread", f"bread {i}"), "Mix flour and bake.")
        for i in range(48)
    ]
    write_jsonl(data / "train.jsonl", demos)
    (data / "info.json").write_text('{"name": "t"}')
    options = ModelOptions(lora=LoraSpec(r=4, alpha=8, dropout=0.0), gradient_checkpointing=True)
    trainers = {
        "one": {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "32-true"},
        "zero2": {
            "accelerator": "cpu",
            "devices": 2,
            "num_nodes": 1,
            "precision": "32-true",
            "strategy": {"_target_": "afd.runtime.strategies.CPUDeepSpeedStrategy", "stage": 2},
        },
    }
    outs, metrics = {}, {}
    for name, trainer in trainers.items():
        outs[name] = tmp_path / name
        outs[name].mkdir()
        sft = SFT(Schedule(epochs=2, batch_size=8), OptimConfig(lr=3e-2), 0.1, None)
        ctx = stage_context(lengths=Lengths(64, 32), trainer=trainer, model=options)
        inputs = {"data": data, "init": policy}
        metrics[name] = StageLauncher(trainer).run(sft.build, outs[name], ctx, inputs)
    assert metrics["zero2"]["trainable_parameters"] == metrics["one"]["trainable_parameters"] > 0
    assert not (outs["zero2"] / "adapter_config.json").exists()  # merged: a plain checkpoint
    torch.testing.assert_close(
        probe_logits(outs["zero2"]), probe_logits(outs["one"]), rtol=1e-4, atol=1e-4
    )
    before = AutoModelForCausalLM.from_pretrained(policy).state_dict()
    after = AutoModelForCausalLM.from_pretrained(outs["zero2"]).state_dict()
    # (the embeddings gained a pad token's row: compare the rows they share)
    changed = {k for k, v in before.items() if not torch.equal(v, after[k][: len(v)])}
    # the adapters trained and were merged into the attention projections, and only there
    assert changed and all(".attn." in k for k in changed), changed
