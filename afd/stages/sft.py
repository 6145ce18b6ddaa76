"""Stage `sft`: forward-KL trajectory matching from pi0 to pi_SFT.

Token NLL on demonstration responses, prompt tokens masked. Demonstrations are trained
on as the policy can produce them (demonstrator-only tokens removed).
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L

from afd.batching import Lengths, LMCollator
from afd.models import load_policy, load_tokenizer
from afd.modules.optim import OptimConfig
from afd.modules.sft import SFTModule
from afd.stages.data import DataDir
from afd.training import Schedule, export_trained, final_metrics, fit


def build(out_dir: Path, data_dir: Path, init_path: str, schedule: Schedule, optim: OptimConfig,
          lengths: Lengths, trainer_cfg, seed: int, val_fraction: float = 0.05,
          num_demos: int | None = None, logger=None, progress=True, dtype="float32") -> dict:
    data = DataDir(data_dir)
    demos = data.examples("train")[:num_demos] if num_demos else data.examples("train")
    rows = [(e.prompt, data.policy_view(e.response)) for e in demos]
    random.Random(seed).shuffle(rows)
    num_val = int(len(rows) * val_fraction)
    val, train = rows[:num_val], rows[num_val:]
    L.seed_everything(seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(init_path)
    model = load_policy(init_path, tokenizer, dtype)
    module = SFTModule(model, optim, schedule.total_steps(len(train)))
    trainer = fit(module, train, val, LMCollator(tokenizer, lengths), schedule, trainer_cfg, logger,
                  seed, progress)
    export_trained(trainer, module, tokenizer, out_dir)
    return {"demonstrations": len(train), **final_metrics(logger)}
