"""The two cached stages of one SPIN iteration t: the reference log-probabilities of its pairs
under pi_{t-1} (inference, in the job's process), then pi_t trained from pi_{t-1} on them.

A pair is a training prompt x, its demonstration y (as the policy can produce it) and the one
sample y' of pi_{t-1} drawn for x; pi_{t-1} is frozen, so log pi_{t-1}(y|x) and
log pi_{t-1}(y'|x) are computed once per iteration rather than at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L
import numpy as np

from afd.core.artifacts import read_samples, read_scores, write_history, write_scores
from afd.core.errors import DataError
from afd.models.batching import training_rows
from afd.models.devices import inference_device
from afd.models.loading import load_policy
from afd.models.options import ModelOptions, prepare_for_training, trainable_parameters
from afd.models.scoring import sequence_logprobs
from afd.models.tokenizers import load_tokenizer
from afd.recipes.spin.module import SPINCollator, SPINModule
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import Schedule, export_trained, fit
from afd.tasks.data_dir import DataDir


def spin_pairs(data: DataDir, samples: Path) -> list[tuple[str, str, str, str]]:
    """(prompt id, prompt, demonstration, sample) for each sampled training prompt, in the
    order of the sample artifact."""
    demos = {e.id: e for e in data.examples("train")}
    pairs = []
    for row in read_samples(samples):
        demo = demos.get(row["prompt_id"])
        if demo is None:
            raise DataError(
                f"sample {row['id']} answers prompt {row['prompt_id']!r}, which has no "
                "training demonstration"
            )
        pairs.append(
            (row["prompt_id"], row["prompt"], data.policy_view(demo.response), row["response"])
        )
    return pairs


@dataclass
class SPINReference:
    """log pi_{t-1} of every pair's demonstration and sample (scores.json: the demonstrations'
    in pair order, then the samples')."""

    stage: ClassVar[str] = "spin_reference"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "load")
    trains: ClassVar[bool] = False

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `data`, `samples` (one per training prompt) and `reference` (pi_{t-1})."""
        pairs = spin_pairs(DataDir(inputs["data"]), inputs["samples"])
        load = ctx.load
        tokenizer = load_tokenizer(inputs["reference"], load.trust_remote_code)
        model = load_policy(inputs["reference"], tokenizer, load.dtype, load.trust_remote_code)
        rows = [{"prompt": p[1], "response": p[2]} for p in pairs]
        rows += [{"prompt": p[1], "response": p[3]} for p in pairs]
        logp = sequence_logprobs(model.to(inference_device()), tokenizer, rows, ctx.lengths)
        ids = [f"{p[0]}/demo" for p in pairs] + [f"{p[0]}/sample" for p in pairs]
        write_scores(out_dir, ids, logp)
        chosen, rejected = logp[: len(pairs)], logp[len(pairs) :]
        return {
            "pairs": len(pairs),
            "demo_logprob": float(chosen.mean()),
            "sample_logprob": float(rejected.mean()),
            "demo_preferred": float(np.mean(chosen > rejected)),
        }


def summarise(history: list[dict]) -> dict:
    """Means over the first and the last tenth of the steps: what the manifest keeps."""
    tenth = max(1, len(history) // 10)
    keys = [k for k in history[0] if k != "step"] if history else []
    first, last = history[:tenth], history[-tenth:]
    out = {f"first_{k}": float(np.mean([r[k] for r in first])) for k in keys}
    return out | {f"final_{k}": float(np.mean([r[k] for r in last])) for k in keys}


@dataclass
class SPINIteration:
    """pi_t: pi_{t-1} trained on its pairs. Keyed by t and the training settings, never by the
    number of iterations, so a longer run reuses the iterations it shares with a shorter one."""

    stage: ClassVar[str] = "spin"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "model")
    trains: ClassVar[bool] = True

    iteration: int
    beta: float
    schedule: Schedule
    optim: OptimConfig

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `data`, `samples`, `reference` (SPINReference) and `previous` (pi_{t-1})."""
        options: ModelOptions = ctx.model
        pairs = spin_pairs(DataDir(inputs["data"]), inputs["samples"])
        ref = read_scores(inputs["reference"])
        if len(ref) != 2 * len(pairs):
            raise DataError(
                f"{inputs['reference']} holds {len(ref)} reference log-probabilities for "
                f"{len(pairs)} pairs (expected {2 * len(pairs)})"
            )
        rows = [(p[1], p[2], p[3], ref[i], ref[len(pairs) + i]) for i, p in enumerate(pairs)]
        previous = str(inputs["previous"])
        tokenizer = load_tokenizer(previous, options.trust_remote_code)
        rows, dropped = training_rows(rows, tokenizer, ctx.lengths, response_fields=(1, 2))
        seed = ctx.seed + self.iteration  # each iteration its own order of the pairs
        L.seed_everything(seed, workers=True, verbose=False)
        model = load_policy(previous, tokenizer, options.dtype, options.trust_remote_code)
        model = prepare_for_training(model, options, "causal_lm")
        trainable = trainable_parameters(model)  # before ZeRO-3 partitions the parameters
        module = SPINModule(model, self.optim, self.schedule.total_steps(len(rows)), self.beta)
        collate = SPINCollator(tokenizer, ctx.lengths)
        what = f"SPIN iteration {self.iteration}"
        trainer = fit(
            module,
            rows,
            [],
            collate,
            self.schedule,
            ctx.trainer,
            ctx.logger,
            seed,
            ctx.progress,
            what,
        )
        # Collective: ZeRO shards are gathered by every rank, LoRA merged; global rank 0 writes.
        export_trained(trainer, module, tokenizer, out_dir, options.dtype)
        if trainer.is_global_zero:
            write_history(out_dir, module.history)
        return {
            "iteration": self.iteration,
            "pairs": len(rows),
            "dropped_long": dropped,
            "trainable_parameters": trainable,
            **summarise(module.history),
        }
