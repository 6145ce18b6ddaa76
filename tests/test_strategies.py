"""Tests for afd.strategies: DeepSpeed ZeRO training on CPU and export to Hugging Face format.

Every Trainer runs in a child process: Lightning and DeepSpeed set distributed environment
variables and a process group that would leak into the rest of the test session.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # lets the tests run before the package is installed
    sys.path.insert(0, str(REPO))
from child_process import run_in_child  # noqa: E402  (needs the path above)

VOCAB, SEQ, GLOBAL_BATCH, STEPS = 64, 16, 8, 30


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    # No dropout: runs with different process counts must see identical computations.
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def token_data(n: int = GLOBAL_BATCH * STEPS, seed: int = 0) -> torch.Tensor:
    """Random first tokens followed by a fixed permutation, so there is something to learn."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(0, VOCAB, (n,), generator=g)]
    for _ in range(SEQ - 1):
        rows.append((rows[-1] * 5 + 3) % VOCAB)
    return torch.stack(rows, dim=1)


def probe_tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(1))


def make_module():
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, DistributedSampler

    class TinyLM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = tiny_gpt2()
            self.losses: list[float] = []

        def training_step(self, batch, batch_idx):
            loss = self.model(input_ids=batch, labels=batch).loss
            # The global-batch loss, comparable across process counts.
            self.losses.append(self.all_gather(loss.detach()).mean().item())
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=3e-3)

        def train_dataloader(self):
            # Lightning's own sampler always shuffles training data when distributed, so the
            # data order would differ from a plain run; this one keeps it the same.
            data, trainer = token_data(), self.trainer
            sampler = DistributedSampler(
                data, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
            return DataLoader(data, batch_size=GLOBAL_BATCH // trainer.world_size, sampler=sampler)

    return TinyLM()


def make_strategy(name: str):
    from afd.runtime.strategies import CPUDeepSpeedStrategy

    if name in ("plain", "ddp"):
        return {"plain": "auto"}.get(name, name)
    # zero0 .. zero3, optionally "zero3_offload"
    offload = name.endswith("_offload")
    return CPUDeepSpeedStrategy(
        stage=int(name[4]), offload_optimizer=offload, offload_parameters=offload
    )


def train(name: str, devices: int, out: Path, precision: str = "32-true") -> None:
    """Entry point of the child process: train, export, record losses and probe logits."""
    import lightning.pytorch as pl

    from afd.runtime.strategies import export_hf_model
    from afd.runtime.workers import leave_process_group

    pl.seed_everything(0, verbose=False)
    module = make_module()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=make_strategy(name),
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        precision=precision,
    )
    trainer.fit(module)
    export_hf_model(trainer, module, out / "hf")
    trainer.save_checkpoint(out / "ckpt")  # a file, or a directory of shards under DeepSpeed
    module.model.eval()
    with torch.no_grad():  # every rank runs it: under ZeRO-3 the forward gathers parameters
        logits = module.model(input_ids=probe_tokens()).logits
    if trainer.is_global_zero:
        torch.save(logits, out / "logits.pt")
        (out / "losses.json").write_text(json.dumps(module.losses))
    leave_process_group()  # as the pipeline's workers do
    if trainer.is_global_zero:
        (out / "finished").touch()


def run_child(name: str, devices: int, out: Path, precision: str = "32-true") -> list[float]:
    run_in_child(
        "test_strategies",
        f"train({name!r}, {devices}, Path({str(out)!r}), {precision!r})",
        out,
        out / "finished",
        OMP_NUM_THREADS="1",  # same kernels and thread count whatever the process count
    )
    return json.loads((out / "losses.json").read_text())


def check_export(out: Path, logits_tol: float = 1e-5) -> torch.nn.Module:
    """The exported directory reloads in fp32, reproduces the trained model's logits and equals
    what the saved Lightning checkpoint exports to."""
    from transformers import AutoModelForCausalLM

    from afd.runtime.strategies import export_hf_model

    reloaded = AutoModelForCausalLM.from_pretrained(out / "hf").eval()
    assert all(p.dtype == torch.float32 for p in reloaded.parameters())
    with torch.no_grad():
        logits = reloaded(input_ids=probe_tokens()).logits
    expected = torch.load(out / "logits.pt").float()
    torch.testing.assert_close(logits, expected, rtol=logits_tol, atol=logits_tol)

    export_hf_model(out / "ckpt", make_module(), out / "hf_from_ckpt")
    from_ckpt = AutoModelForCausalLM.from_pretrained(out / "hf_from_ckpt").state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, from_ckpt[name]), name
    return reloaded


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,precision", [("zero2", "32-true"), ("zero3", "32-true"), ("zero2", "bf16-mixed")]
)
def test_zero_trains_on_cpu_and_exports(name, precision, tmp_path):
    losses = run_child(name, 1, tmp_path, precision)
    assert len(losses) == STEPS
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    if precision == "32-true":
        check_export(tmp_path)
        return
    # The trained module holds bf16 weights; the export must carry the optimizer's fp32 masters.
    reloaded = check_export(tmp_path, logits_tol=0.1)
    weight = reloaded.transformer.h[0].mlp.c_fc.weight
    assert not torch.equal(weight, weight.bfloat16().float())


@pytest.mark.slow
def test_two_zero3_ranks_match_one_process_and_their_checkpoint_exports(tmp_path):
    """ZeRO-3 on two ranks: the loss curve of one process, and its checkpoint (parameters
    partitioned over the ranks) exports to the model it trained. DDP and ZeRO-2 against one
    process, through the project's trainer configs: tests/test_distributed_stages.py."""
    runs = {}
    for name, devices in [("plain", 1), ("zero3", 2)]:
        (tmp_path / name).mkdir()
        runs[name] = run_child(name, devices, tmp_path / name)
        check_export(tmp_path / name)
    assert len(runs["zero3"]) == STEPS
    # Two half-batches sum in a different order than one batch: float rounding only.
    torch.testing.assert_close(
        torch.tensor(runs["zero3"]), torch.tensor(runs["plain"]), rtol=1e-5, atol=1e-5
    )


def test_config_is_copied_and_plain():
    from omegaconf import OmegaConf

    from afd.runtime.strategies import CPUDeepSpeedStrategy

    cfg = {"zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True}
    first, second = CPUDeepSpeedStrategy(config=cfg), CPUDeepSpeedStrategy(config=cfg)
    first.config["train_micro_batch_size_per_gpu"] = 4
    first.config["zero_optimization"]["stage"] = 3
    assert cfg == {"zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True}
    assert second.config == cfg
    from_hydra = CPUDeepSpeedStrategy(config=OmegaConf.create(cfg))
    assert type(from_hydra.config) is dict and type(from_hydra.config["zero_optimization"]) is dict


def test_hydra_instantiates_stage_and_offload():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    strategy = instantiate(
        OmegaConf.create(
            {
                "_target_": "afd.runtime.strategies.CPUDeepSpeedStrategy",
                "stage": 3,
                "offload_optimizer": True,
                "offload_parameters": True,
            }
        )
    )
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu"
