"""Forward KL: SFT from pi0 to pi_SFT (`sft:`), and the policy of `divergence=forward_kl`.

KL(beta || pi) = E_beta[log beta] - E_beta[log pi]; the first term does not depend on pi, so
minimising token NLL on demonstration responses (prompt tokens masked) minimises the
trajectory forward KL: mass-covering. Demonstrations are trained on as the policy can
produce them (demonstrator-only tokens removed). The model options (dtype, LoRA, gradient
checkpointing) come from the model spec; LoRA adapters are merged into the saved model.
`fine_tune` is also the training of pretraining and of the distillation of iterative rounds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch

from afd.core.config import check_count
from afd.core.errors import ConfigError
from afd.models.batching import LMCollator, training_rows
from afd.models.loading import load_policy
from afd.models.options import ModelOptions, prepare_for_training, trainable_parameters
from afd.models.scoring import lm_logits
from afd.models.tokenizers import load_tokenizer
from afd.objectives.losses import token_nll_sum
from afd.runtime.optim import OptimConfig, configure
from afd.runtime.trainer import Schedule, export_trained, final_metrics, fit, training_config
from afd.tasks.data_dir import DataDir


class SFTModule(L.LightningModule):
    """Token NLL on the labelled tokens of each batch (the response; every token when
    pretraining), normalised by the labelled tokens of the whole global batch."""

    def __init__(self, model, optim: OptimConfig, total_steps: int):
        super().__init__()
        self.model = model
        self.optim = optim
        self.total_steps = total_steps

    def _nll(self, batch):
        return token_nll_sum(*lm_logits(self.model, batch))

    def _global_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.trainer.world_size == 1:
            return value
        return self.trainer.strategy.reduce(value.detach().float(), reduce_op="sum")

    def training_step(self, batch, batch_idx):
        nll, tokens = self._nll(batch)
        # Normalise by the tokens of the whole global batch: the gradients that data-parallel
        # processes average are then exactly the gradient of one process's token mean.
        global_tokens = self._global_sum(tokens).clamp(min=1)
        loss = nll / global_tokens * self.trainer.world_size
        mean = self._global_sum(nll) / global_tokens  # the global-batch loss, on every rank
        self.log("train/loss", mean.detach(), prog_bar=True, batch_size=batch["input_ids"].size(0))
        return loss

    def validation_step(self, batch, batch_idx):
        nll, tokens = self._nll(batch)
        loss = nll / tokens.clamp(min=1)
        self.log(
            "val/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0), sync_dist=True
        )
        return loss

    def on_fit_start(self):
        # from_pretrained returns modules in eval mode; train with the model's own dropout.
        self.model.train()

    def configure_optimizers(self):
        return configure(self.model.parameters(), self.optim, self.total_steps)


def fine_tune(
    out_dir: Path,
    rows: list[tuple[str, str]],
    base_path: str,
    val_fraction: float,
    schedule: Schedule,
    optim: OptimConfig,
    ctx,
    seed: int,
    what: str,
) -> dict:
    """Token NLL on (prompt, response) rows from the policy at `base_path`, saved to `out_dir`
    (`what` names the training in the log).
    A `val_fraction` of the shuffled rows is held out for validation. Returns the number of
    training rows (`rows`), rows dropped as too long, trainable parameters and the trainer's
    final metrics. `ctx` gives lengths, trainer, model options, logger and progress."""
    options: ModelOptions = ctx.model
    tokenizer = load_tokenizer(base_path, options.trust_remote_code)
    rows, dropped = training_rows(list(rows), tokenizer, ctx.lengths)
    random.Random(seed).shuffle(rows)
    num_val = int(len(rows) * val_fraction)
    val, train = rows[:num_val], rows[num_val:]
    L.seed_everything(seed, workers=True, verbose=False)
    model = load_policy(base_path, tokenizer, options.dtype, options.trust_remote_code)
    model = prepare_for_training(model, options, "causal_lm")
    trainable = trainable_parameters(model)  # before ZeRO-3 partitions the parameters
    module = SFTModule(model, optim, schedule.total_steps(len(train)))
    trainer = fit(
        module,
        train,
        val,
        LMCollator(tokenizer, ctx.lengths),
        schedule,
        ctx.trainer,
        ctx.logger,
        seed,
        ctx.progress,
        what,
    )
    export_trained(trainer, module, tokenizer, out_dir, options.dtype)
    return {
        "rows": len(train),
        "dropped_long": dropped,
        "trainable_parameters": trainable,
        **final_metrics(ctx.logger),
    }


@dataclass
class SFT:
    """The `sft:` node: pi_SFT fine-tuned from pi0 on the training demonstrations."""

    stage: ClassVar[str] = "sft"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "model")
    trains: ClassVar[bool] = True

    schedule: Schedule
    optim: OptimConfig
    val_fraction: float
    num_demos: int | None  # None: every training demonstration

    def __post_init__(self):
        training_config(self, "sft")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"sft.val_fraction must be in [0, 1), got {self.val_fraction}")
        check_count(self.num_demos, "sft.num_demos", optional=True)

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `data` (the demonstrations) and `init` (pi0)."""
        data = DataDir(inputs["data"])
        demos = data.examples("train", self.num_demos)
        rows = [(e.prompt, data.policy_view(e.response)) for e in demos]
        base = str(inputs["init"])
        metrics = fine_tune(
            out_dir, rows, base, self.val_fraction, self.schedule, self.optim, ctx, ctx.seed, "SFT"
        )
        return {"demonstrations": metrics.pop("rows"), **metrics}


@dataclass
class SFTPolicy:
    """`divergence=forward_kl`: the job's policy is pi_SFT itself."""

    name: str
    level: str

    def policy(self, graph):
        return graph.policy("sft")
