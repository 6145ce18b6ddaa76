"""Stage `sample`: replies of a policy to a split's prompts, through the job's generation
engine (`sampling=`, or `pools.<split>`).

Each row keeps the prompt's id and `meta`, the sample index, whether the reply ended on its
own (EOS or a stop string) or ran into `max_new_tokens`, and the token ids the engine drew
with their summed log-probability under the policy (`logprob`): KL estimates read log pi off
the pool and score the same ids under a reference, with no second pass of the policy.

Over several devices (`shards` > 1: the tasks of a multi-task job, or one process per GPU of
one node) each samples a contiguous shard of the prompts on its own device and the job joins
the shards in prompt order (afd/runtime/sharding.py). vLLM seeds
each prompt by its index in the whole pool, so its pools do not depend on the split; the `hf`
engine seeds each batch, so its pools do, and `shards` is in the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L

from afd.core.artifacts import read_samples, write_samples
from afd.core.config import fingerprint, qualified_name
from afd.core.protocols import SpansDevices
from afd.models.batching import encode_prompt
from afd.runtime.sharding import contiguous_shard, shard_folder
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
    shards: int = 1  # devices (tasks, or processes of one node) that sample a shard each

    def fingerprint(self) -> dict:
        """Its fields; `shards` only when it splits the work (so whole pools keep their key)."""
        fields = {k: fingerprint(v) for k, v in asdict(self).items()}
        if self.shards == 1:
            del fields["shards"]
        return {"_target_": qualified_name(self), **fields}

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `data` (the prompts) and `policy`."""
        rows = self._sample(ctx, inputs, 0, None)
        write_samples(out_dir, rows)
        return self._summary(rows)

    def build_shard(self, shard_dir: Path, ctx, inputs: dict[str, Path], shard: int) -> None:
        """The prompts of shard `shard` (contiguous, in order), sampled to shard_dir/NNNN."""
        if isinstance(ctx.engine, SpansDevices):  # the task is one device
            ctx = ctx.replace(engine=ctx.engine.on_one_device())
        examples = DataDir(inputs["data"]).examples(self.split, self.num_prompts)
        first, part = contiguous_shard(examples, shard, self.shards)
        rows = self._sample(ctx, inputs, first, len(part))
        shard_folder(shard_dir, shard).mkdir()
        write_samples(shard_folder(shard_dir, shard), rows)

    def gather(self, out_dir: Path, shard_dir: Path) -> dict:
        parts = [shard_folder(shard_dir, i) for i in range(self.shards)]
        rows = [r for part in parts for r in read_samples(part)]
        write_samples(out_dir, rows)
        return {**self._summary(rows), "shards": self.shards}

    def _sample(self, ctx, inputs: dict[str, Path], first: int, count: int | None) -> list[dict]:
        """Rows of the prompts first, first + 1, ... (`count` of them; None: to the end)."""
        data = DataDir(inputs["data"])
        examples = data.examples(self.split, self.num_prompts)
        examples = examples[first:] if count is None else examples[first : first + count]
        L.seed_everything(self.seed, verbose=False)
        if not examples:
            return []
        with ctx.engine.open(inputs["policy"], ctx.load, ctx.sampling, ctx.progress) as gen:
            prompts = [encode_prompt(gen.tokenizer, e.prompt, ctx.lengths) for e in examples]
            generated = gen.generate(
                prompts, self.num_samples, self.seed, data.demonstrator_only_tokens, first
            )
        rows = []
        for example, samples in zip(examples, generated):
            for j, s in enumerate(samples):
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
        return rows

    def _summary(self, rows: list[dict]) -> dict:
        prompts = len({r["prompt_id"] for r in rows})
        finished = sum(r["finished"] for r in rows)
        share = finished / max(1, len(rows))
        return {"prompts": prompts, "samples": len(rows), "finished_fraction": share}
