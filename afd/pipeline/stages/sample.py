"""Stage `sample`: replies of a policy to a split's prompts, through the job's generation
engine (`sampling=`).

Each row keeps the prompt's id and `meta`, the sample index, whether the reply ended on its
own (EOS or a stop string) or ran into `max_new_tokens`, and the token ids the engine drew
with their summed log-probability under the policy (`logprob`): KL estimates read log pi off
the pool and score the same ids under a reference, with no second pass of the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L

from afd.core.artifacts import write_samples
from afd.models.batching import encode_prompt
from afd.tasks.data_dir import DataDir


@dataclass
class SampleStage:
    stage: ClassVar[str] = "sample"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "sampling", "engine", "load")
    trains: ClassVar[bool] = False

    split: str
    num_samples: int
    num_prompts: int | None
    seed: int

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `data` (the prompts) and `policy`."""
        data = DataDir(inputs["data"])
        examples = data.examples(self.split, self.num_prompts)
        L.seed_everything(self.seed, verbose=False)
        with ctx.engine.open(inputs["policy"], ctx.load, ctx.sampling, ctx.progress) as gen:
            prompts = [encode_prompt(gen.tokenizer, e.prompt, ctx.lengths) for e in examples]
            generated = gen.generate(
                prompts, self.num_samples, self.seed, data.demonstrator_only_tokens
            )
        rows, finished = [], 0
        for example, samples in zip(examples, generated):
            for j, s in enumerate(samples):
                finished += s.finished
                rows.append(
                    {
                        "id": f"{example.id}/{j}",
                        "prompt_id": example.id,
                        "sample": j,
                        "prompt": example.prompt,
                        "response": s.response,
                        "finished": s.finished,
                        "num_tokens": s.num_tokens,
                        "logprob": s.logprob,
                        "token_ids": s.token_ids,
                        "meta": example.meta,
                    }
                )
        write_samples(out_dir, rows)
        total = len(examples) * self.num_samples
        return {"prompts": len(examples), "samples": total, "finished_fraction": finished / total}
