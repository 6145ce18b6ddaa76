"""Time and GPU memory per stage of the paper's HH experiments, and the full-run estimate.

Runs the real pipeline (`+experiment=harmless` for GPT-2, `+experiment=helpful_gemma` for
Gemma) on real HH text, with models of the real architectures built from their configs
(random weights: no Hub needed, so it runs on an offline GPU node). Random models never stop
early, so every sample runs to 128 new tokens: sampling times are upper bounds. Per-stage
seconds are measured at a reduced size and scaled by rows to the experiment's full size.

    python experiments/bench_hh_gpu.py --preset gpt2 --data DIR   # DIR/harmless-base/test.jsonl.gz
    python experiments/bench_hh_gpu.py --preset gemma --data DIR
    python experiments/bench_hh_gpu.py --preset tiny --data DIR   # CPU smoke run of this script
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from hh_architectures import GEMMA_2B, GEMMA_7B, GPT2, GPT2_LARGE  # noqa: E402

# Rows of Anthropic/hh-rlhf (dataset card): harmless-base 42,537 train; helpful-base 43,835.
FULL_TRAIN_ROWS = {"harmless": 42_537, "helpful": 43_835}
ARCH = {  # (policy, golden reward model): transformers config class and kwargs
    "gpt2": (("GPT2Config", GPT2), ("GPT2Config", GPT2_LARGE)),
    "gemma": (("GemmaConfig", GEMMA_2B), ("GemmaConfig", GEMMA_7B)),
    "tiny": (
        ("GPT2Config", dict(n_layer=2, n_embd=64, n_head=2, n_positions=1024, vocab_size=4096)),
        ("GPT2Config", dict(n_layer=2, n_embd=64, n_head=2, n_positions=1024, vocab_size=4096)),
    ),
}
EXPERIMENT = {"gpt2": "harmless", "gemma": "helpful_gemma", "tiny": "harmless"}


def build_models(preset: str, work: Path) -> dict[str, Path]:
    """Random-weight policy and golden reward model of the preset's architectures, saved in HF
    format with a tokenizer trained on HH text (GPT-2 style, or Gemma style with BOS and a
    chat template)."""
    import transformers
    from tiny_hf import gemma_like_tokenizer, gpt2_like_tokenizer, hh_texts

    texts = hh_texts(2000)
    tok = (
        gemma_like_tokenizer(texts, 8192) if preset == "gemma" else gpt2_like_tokenizer(texts, 4096)
    )
    dtype = torch.bfloat16 if preset == "gemma" else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    paths = {}
    for role, (cls, kwargs), head in zip(
        ("policy", "gold"), ARCH[preset], ("CausalLM", "SequenceClassification")
    ):
        config = getattr(transformers, cls)(
            **kwargs,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            num_labels=1,
        )
        model_cls = getattr(
            transformers,
            cls.replace(
                "Config",
                "LMHeadModel" if cls == "GPT2Config" and head == "CausalLM" else f"For{head}",
            ),
        )
        torch.set_default_dtype(dtype)  # built in its own dtype: a 7B model never exists in fp32
        with torch.device(device):
            torch.manual_seed(0)
            model = model_cls(config)
        torch.set_default_dtype(torch.float32)
        paths[role] = work / role
        model.save_pretrained(paths[role])
        tok.save_pretrained(paths[role])
        del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return paths


def overrides(preset: str, data: Path, models: dict[str, Path], cache: Path) -> list[str]:
    small = preset == "tiny"
    return [
        f"+experiment={EXPERIMENT[preset]}",
        f"cache_dir={cache}",
        "logger=none",
        "progress=false",
        *(["trainer=cpu"] if not torch.cuda.is_available() else []),
        f"data.task.path={data}",
        "data.task.data_dir=harmless-base",
        "data.task.train_split=test",
        "data.task.heldout_split=null",
        f"data.task.num_train_prompts={64 if small else 2000}",
        f"data.task.num_heldout_prompts={4 if small else 64}",
        f"data.task.num_pairs={64 if small else 2000}",
        f"rm.num_prompts={32 if small else 1000}",
        f"bon.n_max={8 if small else 64}",
        f"bon.num_prompts={4 if small else 64}",
        f"model.name_or_path={models['policy']}",
        f"gold.name_or_path={models['gold']}",
        *(["data.max_new_tokens=16", "n=4"] if small else []),
    ]


def full_rows(cfg, preset: str) -> dict[str, float]:
    """Rows each stage handles in the full experiment (train prompts: the dataset card)."""
    kind = "helpful" if "helpful" in EXPERIMENT[preset] else "harmless"
    train, heldout = FULL_TRAIN_ROWS[kind], cfg.data.task.num_heldout_prompts
    pool, rm = heldout * cfg.bon.n_max, cfg.rm.num_prompts * cfg.rm.samples_per_prompt
    return {
        "sft": train * cfg.sft.schedule.epochs,
        "sample/init/train": rm,
        "sample/sft/train": rm,
        "reward": 2 * rm * cfg.rm.schedule.epochs,
        "sample/sft/heldout": pool,
        "score/gold/sft/heldout": pool,
        "score/reward/sft/heldout": pool,
        "sample/init/heldout": heldout * cfg.eval.init_samples_per_prompt,
        "score/gold/init/heldout": heldout * cfg.eval.init_samples_per_prompt,
        "score/gold/demo/heldout": heldout,
    }


def measured_rows(label: str, metrics: dict, cfg) -> float:
    if label == "sft":
        return metrics["demonstrations"] * cfg.sft.schedule.epochs
    if label == "reward":
        return metrics["train_rows"] * cfg.rm.schedule.epochs
    return metrics.get("samples") or metrics.get("rows") or 1


def instrument(record: dict):
    """Wrap every stage build of the pipeline with a timer and a GPU peak-memory reading."""
    from afd.pipeline.graph import Pipeline

    original = Pipeline._node

    def timed(self, label, stage, config, upstream, build):
        def measured(out):
            sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
            sync()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            metrics = build(out) or {}
            sync()
            peak = (
                torch.cuda.max_memory_allocated() / 2**30
                if torch.cuda.is_available()
                else float("nan")
            )
            record[label] = {
                "seconds": time.perf_counter() - start,
                "peak_gib": peak,
                "metrics": metrics,
            }
            return metrics

        return original(self, label, stage, config, upstream, measured)

    Pipeline._node = timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=sorted(ARCH), required=True)
    parser.add_argument(
        "--data", type=Path, required=True, help="directory with harmless-base/test.jsonl.gz"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    from conftest import compose_config

    from afd.pipeline.evaluate import evaluate
    from afd.pipeline.graph import Pipeline
    from afd.reporting.tracking import Tracker

    work = Path(tempfile.mkdtemp(prefix="bench_hh_"))
    start = time.perf_counter()
    models = build_models(args.preset, work)
    build_s = time.perf_counter() - start
    cfg = compose_config(overrides(args.preset, args.data.resolve(), models, work / "cache"))
    full_cfg = compose_config([f"+experiment={EXPERIMENT[args.preset]}"])
    record: dict = {}
    instrument(record)
    start = time.perf_counter()
    results = evaluate(Pipeline.from_config(cfg, Tracker()), cfg.n)
    total = time.perf_counter() - start
    full = full_rows(full_cfg, args.preset)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(
        f"\n{args.preset} ({EXPERIMENT[args.preset]}) on {device}; "
        f"models built in {build_s:.0f} s; pipeline {total:.0f} s"
    )
    print(
        f"{'stage':28s} {'rows':>7s} {'s':>8s} {'rows/s':>9s} {'peak GiB':>9s} "
        f"{'full rows':>10s} {'full est. min':>13s}"
    )
    table = {}
    for label, r in record.items():
        rows = measured_rows(label, r["metrics"], cfg)
        rate = rows / r["seconds"]
        est = full.get(label, rows) / rate / 60
        table[label] = {
            **r,
            "rows": rows,
            "rows_per_s": rate,
            "full_rows": full.get(label),
            "full_min": est,
        }
        print(
            f"{label:28s} {rows:7.0f} {r['seconds']:8.1f} {rate:9.1f} {r['peak_gib']:9.2f} "
            f"{full.get(label, float('nan')):10.0f} {est:13.1f}"
        )
    print(
        f"{'total (full size, estimated)':28s} {'':7s} {'':8s} {'':9s} {'':9s} {'':10s} "
        f"{sum(t['full_min'] for t in table.values()):13.1f}"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "preset": args.preset,
                    "device": device,
                    "build_s": build_s,
                    "pipeline_s": total,
                    "stages": table,
                    "gold": results["gold"],
                },
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
