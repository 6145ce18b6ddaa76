"""A gold judge trained here (`gold=hh_preference_judge`): the stand-in of the over-optimisation
literature for a golden reward model that cannot be downloaded. A Bradley-Terry judge on human
preference pairs (HH chosen vs rejected) from prompts that the pipeline never sees (the top
`reserved_fraction` of prompt hashes, which the task itself leaves out), read by a backbone
that is not the policy's.

On 2 CPU cores the backbone stays frozen: its last-token features of every chosen and rejected
reply are computed once, and a linear head is fitted by L2-regularised Bradley-Terry
(logistic regression on feature differences; the penalty picked on an inner validation split).
The head becomes the `score` layer of a sequence classifier saved in HF format, so the judge
scores exactly as it was trained, through RewardModelGold. Its pairwise accuracy on held-out
reserved pairs is the stage's metric.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate

from afd.core.config import check_number, plain
from afd.core.errors import ConfigError
from afd.core.protocols import TrainedJudge
from afd.models.dialogue import PlainText
from afd.tasks.gold import RewardModelGold

PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # L2 weights tried, on standardised features


@dataclass
class PreferenceJudge:
    """The `_target_` of conf/gold/hh_preference_judge.yaml."""

    task: Any  # the job's HH task config (its file and reserved prompts)
    backbone: Any  # a PretrainedModel spec: the judge reads text through it
    num_pairs: int  # reserved pairs used (train + held-out)
    val_fraction: float  # of those, by prompt, for the judge's held-out accuracy
    max_length: int
    batch_size: int
    feature_dtype: str  # the frozen backbone's dtype while features are computed
    format: Any = None  # how the judge reads a pair: PlainText (None) or ChatTemplate

    def __post_init__(self):
        self.task = plain(self.task)
        built = lambda node: instantiate(node) if isinstance(plain(node), dict) else node  # noqa: E731
        self.backbone = built(self.backbone)
        self.format = built(self.format) if self.format is not None else PlainText()
        check_number(self.num_pairs, "gold.num_pairs", 10, integer=True)
        check_number(self.val_fraction, "gold.val_fraction", 0.05, 0.5)
        check_number(self.max_length, "gold.max_length", 16, integer=True)
        check_number(self.batch_size, "gold.batch_size", 1, integer=True)
        if not self.task.get("reserved_fraction"):
            raise ConfigError(
                "gold=hh_preference_judge trains on prompts the task keeps out of the pipeline: "
                "set data.task.reserved_fraction > 0 (e.g. 0.3)"
            )

    def fingerprint(self) -> dict:
        return {
            "judge": "hh_preference_judge",
            "task": self.task,
            "backbone": self.backbone.source(),
            **{k: getattr(self, k) for k in ("num_pairs", "val_fraction", "max_length")},
            "feature_dtype": self.feature_dtype,
            "format": type(self.format).__name__,
        }

    def hub_resources(self) -> list:
        return self.backbone.hub_resources()

    def scorer(self, judge_dir: str | Path) -> RewardModelGold:
        """The trained judge, as every score stage and training curve reads it."""
        return RewardModelGold(
            str(judge_dir), self.format, self.max_length, self.batch_size, "float32"
        )

    def pairs(self) -> tuple[list, list]:
        """(train, held-out) reserved pairs, split by prompt with a fixed seed."""
        pairs = instantiate(self.task).reserved_pairs()
        random.Random(0).shuffle(pairs)
        pairs = pairs[: self.num_pairs]
        prompts = sorted({p.prompt for p in pairs})
        random.Random(1).shuffle(prompts)
        held = set(prompts[: max(1, int(len(prompts) * self.val_fraction))])
        return [p for p in pairs if p.prompt not in held], [p for p in pairs if p.prompt in held]


def judge_scorer(gold, inputs: dict[str, Path]):
    """The gold scorer a stage reads: the judge trained upstream (input `judge`), or the gold
    scorer itself."""
    return gold.scorer(inputs["judge"]) if isinstance(gold, TrainedJudge) else gold


@torch.no_grad()
def features(judge: RewardModelGold, rows: list[dict], dtype: str) -> np.ndarray:
    """The hidden state the classifier's score layer reads at each row's last real token."""
    from afd.models.loading import DTYPES

    model, tok = judge.load()
    model.to(DTYPES[dtype])
    captured: list[torch.Tensor] = []
    hook = model.score.register_forward_hook(lambda m, args, out: captured.append(args[0]))
    try:
        encoded = [judge.encode(r["prompt"], r["response"]) for r in rows]
        order = sorted(range(len(rows)), key=lambda i: -len(encoded[i]))
        out = np.zeros((len(rows), model.config.hidden_size))
        for start in range(0, len(order), judge.batch_size):
            idx = order[start : start + judge.batch_size]
            seqs = [encoded[i] for i in idx]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), tok.pad_token_id)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for j, s in enumerate(seqs):
                ids[j, : len(s)], mask[j, : len(s)] = torch.tensor(s), 1
            captured.clear()
            model(input_ids=ids, attention_mask=mask)
            last = mask.sum(1) - 1
            out[idx] = captured[0][torch.arange(len(seqs)), last].double().numpy()
        return out
    finally:
        hook.remove()
        model.to(torch.float32)


def fit_bradley_terry(diff: np.ndarray, penalty: float) -> np.ndarray:
    """argmin_w mean softplus(-diff w) + penalty / 2 |w|^2 (exact, by L-BFGS in float64)."""
    x = torch.tensor(diff)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        value = torch.nn.functional.softplus(-(x @ w)).mean() + 0.5 * penalty * (w @ w)
        value.backward()
        return value

    opt.step(loss)
    return w.detach().numpy()


def train_head(chosen: np.ndarray, rejected: np.ndarray) -> tuple[np.ndarray, float]:
    """(weights on raw features, chosen penalty): standardised features, the penalty picked by
    pairwise accuracy on an inner fifth of the pairs, then refitted on all of them."""
    scale = np.concatenate([chosen, rejected]).std(0) + 1e-6
    diff = (chosen - rejected) / scale
    inner = np.arange(len(diff)) % 5 == 0
    accuracy = {
        p: float((diff[inner] @ fit_bradley_terry(diff[~inner], p) > 0).mean()) for p in PENALTIES
    }
    best = max(PENALTIES, key=lambda p: (accuracy[p], p))  # ties: the stronger penalty
    return fit_bradley_terry(diff, best) / scale, best


def train_judge(judge_cfg: PreferenceJudge, backbone: Path, out_dir: Path) -> dict:
    """Fit the judge's head on the backbone at `backbone`; save the classifier to `out_dir`."""
    train, held = judge_cfg.pairs()
    if len(train) < 10 or not held:
        raise ConfigError(
            f"gold=hh_preference_judge: only {len(train)} training and {len(held)} held-out "
            "pairs on reserved prompts; raise data.task.reserved_fraction or gold.num_pairs"
        )
    reader = RewardModelGold(
        str(backbone),
        judge_cfg.format,
        judge_cfg.max_length,
        judge_cfg.batch_size,
        "float32",
        fresh_head=True,
    )
    rows = lambda pairs, side: [  # noqa: E731
        {"prompt": p.prompt, "response": getattr(p, side)} for p in pairs
    ]
    feats = {
        (split, side): features(reader, rows(pairs, side), judge_cfg.feature_dtype)
        for split, pairs in (("train", train), ("held", held))
        for side in ("chosen", "rejected")
    }
    weights, penalty = train_head(feats["train", "chosen"], feats["train", "rejected"])
    model, tok = reader.load()
    model.score.weight.data = torch.tensor(weights, dtype=torch.float32)[None]
    model.config.num_labels = 1
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    judged = judge_cfg.scorer(out_dir)
    held_acc = float(
        (judged.score(rows(held, "chosen")) > judged.score(rows(held, "rejected"))).mean()
    )
    train_acc = float(
        ((feats["train", "chosen"] - feats["train", "rejected"]) @ weights > 0).mean()
    )
    return {
        "judge_accuracy": held_acc,
        "judge_train_accuracy": train_acc,
        "judge_train_pairs": len(train),
        "judge_heldout_pairs": len(held),
        "penalty": penalty,
        "features": int(weights.shape[0]),
    }
