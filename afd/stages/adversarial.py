"""Stage `adversarial`: a policy trained by adversarial imitation (reverse KL, JS, any f).

Starts from pi_SFT or pi0, trains an AdversarialModule against demonstrations of the
training split (with the model options: dtype, LoRA on policy and discriminator, gradient
checkpointing), and saves the policy in HF format, LoRA merged, with its training curve
(`history.json`: discriminator loss and accuracy, proxy reward, KL to the reference and,
where the task has one, the gold reward of the step's samples).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, Sampler

from afd.batching import Lengths, encode_prompt, encode_response, pad_batch
from afd.finetune import ModelOptions, prepare_for_training
from afd.models import load_policy, load_tokenizer
from afd.modules.adversarial import AdversarialConfig, AdversarialModule
from afd.ranks import cluster_environment
from afd.stages.data import DataDir
from afd.training import export_trained, trainer_kwargs

log = logging.getLogger(__name__)
HISTORY = "history.json"


class DemoCollator:
    """Rows (prompt ids, demonstration ids, response start, meta) into a training batch."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows):
        seqs = [r[1] for r in rows]
        labels = [[-100] * r[2] + r[1][r[2] :] for r in rows]
        return {
            "prompt_ids": [r[0] for r in rows],
            "demos": pad_batch(seqs, self.pad_id, "right", labels),
            "meta": [r[3] for r in rows],
        }


class DrawWithReplacement(Sampler):
    """`num_samples` row indices drawn with replacement. Its own class (not RandomSampler),
    so Lightning shards it across processes instead of swapping in a one-epoch sampler."""

    def __init__(self, size: int, num_samples: int, seed: int):
        self.size, self.num_samples, self.seed = size, num_samples, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        yield from torch.randint(self.size, (self.num_samples,), generator=g).tolist()

    def __len__(self):
        return self.num_samples


def demo_rows(data: DataDir, tokenizer, lengths: Lengths, num_prompts: int | None) -> list[tuple]:
    """Demonstrations as the policy can produce them (demonstrator-only tokens removed)."""
    examples = data.examples("train")[:num_prompts] if num_prompts else data.examples("train")
    rows = []
    for e in examples:
        prompt = encode_prompt(tokenizer, e.prompt, lengths)
        response = encode_response(tokenizer, data.policy_view(e.response), lengths)
        rows.append((prompt, prompt + response, len(prompt), e.meta))
    return rows


def manual_trainer_kwargs(trainer_cfg) -> tuple[dict, float | None]:
    """Trainer kwargs for manual optimisation: Lightning refuses gradient clipping and
    accumulation there, so clipping moves into the module (or DeepSpeed's config). Under DDP
    each step backpropagates twice, through one role at a time, so DDP must expect parameters
    that a backward pass does not reach."""
    kwargs = trainer_kwargs(trainer_cfg)
    processes = int(kwargs.get("devices", 1)) * int(kwargs.get("num_nodes", 1))
    if kwargs.get("strategy") == "ddp" or (
        kwargs.get("strategy", "auto") == "auto" and processes > 1
    ):
        kwargs["strategy"] = "ddp_find_unused_parameters_true"
    elif type(kwargs.get("strategy")) is DDPStrategy:
        kwargs["strategy"]._ddp_kwargs["find_unused_parameters"] = True
    clip = kwargs.pop("gradient_clip_val", None)
    if kwargs.pop("accumulate_grad_batches", 1) != 1:
        raise ValueError(
            "trainer.accumulate_grad_batches must be 1 for adversarial training "
            "(each step samples the policy afresh); raise divergence.prompts_per_step"
        )
    strategy = kwargs.get("strategy")
    if clip and hasattr(strategy, "config") and isinstance(strategy.config, dict):
        strategy.config.setdefault("gradient_clipping", clip)  # DeepSpeed clips inside its engine
        clip = None
    return kwargs, clip


def build(
    out_dir: Path,
    data_dir: Path,
    policies: dict[str, str],
    recipe,
    cfg: AdversarialConfig,
    lengths: Lengths,
    trainer_cfg,
    seed: int,
    gold=None,
    logger=None,
    progress=True,
    num_prompts: int | None = None,
    options: ModelOptions | None = None,
) -> dict:
    """`policies`: paths of the roles start, reference and backbone; `gold`: a factory of
    the gold scorer, called only if the task can score the samples (None: no gold curve)."""
    options = options or ModelOptions()
    data = DataDir(data_dir)
    L.seed_everything(seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(policies["start"], options.trust_remote_code)
    rows = demo_rows(data, tokenizer, lengths, num_prompts)
    banned = [tokenizer.convert_tokens_to_ids(t) for t in data.demonstrator_only_tokens]
    banned = [b for b in banned if b is not None and b != tokenizer.unk_token_id]
    score_gold = None
    if gold is not None:
        scorer = gold()

        def score_gold(metas, texts):
            return scorer.score(
                [{"meta": m, "response": t} for m, t in zip(metas, texts, strict=True)]
            )

    def load(role):
        return load_policy(policies[role], tokenizer, options.dtype, options.trust_remote_code)

    disc = recipe.discriminator.load(
        policies["backbone"], tokenizer, options.dtype, options.trust_remote_code
    )
    module = AdversarialModule(
        prepare_for_training(load("start"), options, "causal_lm"),
        load("reference"),
        prepare_for_training(disc, options, recipe.discriminator.task),
        recipe.discriminator,
        recipe.f,
        cfg,
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        seed,
        banned,
        score_gold,
        lambda ids: tokenizer.decode(ids, skip_special_tokens=True).strip(),
        None,
    )
    kwargs, module.clip = manual_trainer_kwargs(trainer_cfg)
    # Every process takes `steps` steps of `prompts_per_step` prompts, its shard of the draws.
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=cfg.steps,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        plugins=[cluster_environment()],
        **kwargs,
    )
    draws = cfg.steps * cfg.prompts_per_step * trainer.num_nodes * trainer.num_devices
    loader = DataLoader(
        rows,
        batch_size=cfg.prompts_per_step,
        sampler=DrawWithReplacement(len(rows), draws, seed),
        collate_fn=DemoCollator(tokenizer.pad_token_id),
        drop_last=True,
    )
    log.info(
        "adversarial %s (%s) for %d steps on %d demonstrations",
        recipe.name,
        recipe.discriminator.level,
        cfg.steps,
        len(rows),
    )
    trainer.fit(module, loader)
    # Collective: ZeRO shards are gathered by every rank, LoRA merged; global rank 0 writes.
    export_trained(trainer, module, tokenizer, out_dir, options.dtype, attr="policy")
    if trainer.is_global_zero:
        (Path(out_dir) / HISTORY).write_text(json.dumps(module.history))
    return summarise(module.history)


def summarise(history: list[dict]) -> dict:
    """Means over the last tenth of training, the numbers a manifest keeps."""
    tail = history[-max(1, len(history) // 10) :]
    keys = sorted({k for r in tail for k in r if k != "step"})
    return {f"final_{k}": float(np.mean([r[k] for r in tail if k in r])) for k in keys}


def read_history(path: Path) -> list[dict]:
    file = Path(path) / HISTORY
    return json.loads(file.read_text()) if file.exists() else []
