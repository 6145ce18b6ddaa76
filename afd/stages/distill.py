"""Stage `distill`: fine-tune a policy on chosen (prompt, response) rows, e.g. its own
Best-of-n replies (one round of iterative AfD, afd/iterate.py). Token NLL, as SFT."""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L

from afd.batching import Lengths, LMCollator
from afd.models import load_policy, load_tokenizer
from afd.modules.optim import OptimConfig
from afd.modules.sft import SFTModule
from afd.training import Schedule, final_metrics, fit


def build(out_dir: Path, rows: list[tuple[str, str]], base_path: str, schedule: Schedule,
          optim: OptimConfig, lengths: Lengths, trainer_cfg, seed: int, logger=None, progress=True) -> dict:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    L.seed_everything(seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(base_path)
    model = load_policy(base_path, tokenizer)
    module = SFTModule(model, optim, schedule.total_steps(len(rows)))
    fit(module, rows, [], LMCollator(tokenizer, lengths), schedule, trainer_cfg, logger, seed, progress)
    module.model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"rows": len(rows), **final_metrics(logger)}
