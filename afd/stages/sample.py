"""Stage `sample`: responses of a policy to a split's prompts, as JSONL rows.

Each row keeps the prompt's id and `meta`, the sample index and whether the response
ended on its own (EOS or a stop string) or ran into `max_new_tokens`.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from afd.batching import Lengths
from afd.data.records import iter_jsonl
from afd.devices import inference_device
from afd.finetune import ModelOptions
from afd.models import load_policy, load_tokenizer
from afd.sampling import SamplingConfig, generate
from afd.stages.data import DataDir

SAMPLES = "samples.jsonl"


def build(
    out_dir: Path,
    data_dir: Path,
    policy_path: str,
    split: str,
    num_samples: int,
    num_prompts: int | None,
    sampling: SamplingConfig,
    lengths: Lengths,
    seed: int,
    progress: bool = True,
    options: ModelOptions | None = None,
) -> dict:
    data = DataDir(data_dir)
    examples = data.examples(split)
    if num_prompts:
        examples = examples[:num_prompts]
    L.seed_everything(seed, verbose=False)
    options = options or ModelOptions()
    tokenizer = load_tokenizer(policy_path, options.trust_remote_code)
    model = load_policy(policy_path, tokenizer, options.dtype, options.trust_remote_code)
    model.to(inference_device())
    generated = generate(
        model,
        tokenizer,
        [e.prompt for e in examples],
        num_samples,
        sampling,
        lengths,
        seed,
        banned_tokens=data.demonstrator_only_tokens,
        progress=progress,
    )
    finished = 0
    with open(out_dir / SAMPLES, "w") as f:
        for example, samples in zip(examples, generated):
            for j, s in enumerate(samples):
                finished += s.finished
                f.write(
                    json.dumps(
                        {
                            "id": f"{example.id}/{j}",
                            "prompt_id": example.id,
                            "sample": j,
                            "prompt": example.prompt,
                            "response": s.response,
                            "finished": s.finished,
                            "num_tokens": s.num_tokens,
                            "meta": example.meta,
                        }
                    )
                    + "\n"
                )
    total = len(examples) * num_samples
    return {"prompts": len(examples), "samples": total, "finished_fraction": finished / total}


def read_samples(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(Path(path) / SAMPLES)]
