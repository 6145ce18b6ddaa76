"""Stage `pretrain` (synthetic task only): a tiny GPT-2 language-modelled on the base corpus.

The result is the initial policy pi0: fluent in the task's format, not aligned. Its
tokenizer is built here and saved with it in HF format.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L

from afd.batching import Lengths, LMCollator
from afd.modules.optim import OptimConfig
from afd.modules.sft import SFTModule
from afd.stages.data import DataDir
from afd.training import Schedule, export_trained, final_metrics, fit


def build(
    out_dir: Path,
    corpus_dir: Path,
    model_spec,
    schedule: Schedule,
    optim: OptimConfig,
    lengths: Lengths,
    trainer_cfg,
    seed: int,
    logger=None,
    progress=True,
) -> dict:
    data = DataDir(corpus_dir)
    corpus = data.examples("corpus")
    rows = [(e.prompt, e.response) for e in corpus]
    L.seed_everything(seed, workers=True, verbose=False)
    tokenizer = model_spec.build_tokenizer(
        data.info.get("vocabulary"), [f"{p} {r}" for p, r in rows]
    )
    model = model_spec.build(tokenizer)
    random.Random(seed).shuffle(rows)
    num_val = max(1, len(rows) // 50)
    val, train = rows[:num_val], rows[num_val:]
    module = SFTModule(model, optim, schedule.total_steps(len(train)))
    collate = LMCollator(tokenizer, lengths, train_on_prompt=True)
    trainer = fit(module, train, val, collate, schedule, trainer_cfg, logger, seed, progress)
    export_trained(trainer, module, tokenizer, out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), **final_metrics(logger)}
