"""Throughput and peak GPU memory of the model work in the paper's HH experiments.

Standalone (torch, transformers, peft): each workload is what one afd stage does at the
experiment's shapes, on models of the real architectures with random weights (no Hub):
  sft_gpt2       SFT / reward-model step, GPT-2 small, batch 32 x 512 tokens, bf16 autocast
  gen_gpt2       sampling, GPT-2 small fp32, 256 rows x (256 prompt + 128 new) tokens
  score_gpt2l    golden RM, GPT-2 large fp32, 32 rows x 512 tokens
  sft_gemma2b    SFT step, Gemma-2B bf16 + LoRA r16 (q,k,v,o) + gradient checkpointing, 16 x 512
  gen_gemma2b    sampling, Gemma-2B bf16, 128 rows x (256 + 128) tokens
  score_gemma7b  golden RM, RM-Gemma-7B architecture bf16, 16 rows x 512 tokens
Every generated row runs the full 128 new tokens (a trained model often stops sooner) and
every prompt is 256 tokens (most HH prompts are shorter), so the rates are lower bounds.

    python experiments/bench_hh_gpu_models.py            # on a GPU node; prints a table
"""

from __future__ import annotations

import time

import torch
import transformers as tf
from hh_architectures import GEMMA_2B, GEMMA_7B, GPT2_LARGE


def build(model_cls, config, dtype):
    torch.set_default_dtype(dtype)  # built in its own dtype on the GPU: no fp32 copy of a 7B model
    with torch.device("cuda"):
        model = model_cls(config)
    torch.set_default_dtype(torch.float32)
    return model


def timed(step, repeats: int) -> tuple[float, float]:
    """(seconds per call, peak GiB) after one warm-up call."""
    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, torch.cuda.max_memory_allocated() / 2**30


def ids(vocab: int, rows: int, length: int):
    return torch.randint(0, vocab, (rows, length), device="cuda")


def train_step(model, batch):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def generate(model, prompts):
    return lambda: model.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        do_sample=True,
        max_new_tokens=128,
        min_new_tokens=128,
        pad_token_id=0,
    )


def score(model, batch):
    def step():
        with torch.no_grad():
            return model(input_ids=batch).logits

    return step


def main() -> None:
    from peft import LoraConfig, get_peft_model

    rows = {}
    gpt2 = build(tf.GPT2LMHeadModel, tf.GPT2Config(), torch.float32)
    rows["sft_gpt2"] = timed(train_step(gpt2.train(), ids(50_257, 32, 512)), 10), 32
    rows["gen_gpt2"] = timed(generate(gpt2.eval(), ids(50_257, 256, 256)), 2), 256
    del gpt2
    judge = build(
        tf.GPT2ForSequenceClassification,
        tf.GPT2Config(**GPT2_LARGE, num_labels=1, pad_token_id=0),
        torch.float32,
    ).eval()
    rows["score_gpt2l"] = timed(score(judge, ids(50_257, 32, 512)), 10), 32
    del judge
    gemma = build(tf.GemmaForCausalLM, tf.GemmaConfig(**GEMMA_2B), torch.bfloat16)
    gemma.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = get_peft_model(
        gemma,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=16,
            lora_alpha=32,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        ),
    )
    rows["sft_gemma2b"] = timed(train_step(lora.train(), ids(256_000, 16, 512)), 10), 16
    gemma.gradient_checkpointing_disable()
    rows["gen_gemma2b"] = timed(generate(lora.eval(), ids(256_000, 128, 256)), 2), 128
    del gemma, lora
    torch.cuda.empty_cache()
    judge = build(
        tf.GemmaForSequenceClassification,
        tf.GemmaConfig(**GEMMA_7B, num_labels=1, pad_token_id=0),
        torch.bfloat16,
    ).eval()
    rows["score_gemma7b"] = timed(score(judge, ids(256_000, 16, 512)), 10), 16
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, transformers {tf.__version__}"
    )
    print(f"{'workload':14s} {'s/call':>8s} {'rows/s':>8s} {'peak GiB':>9s}")
    for name, ((seconds, peak), size) in rows.items():
        print(f"{name:14s} {seconds:8.3f} {size / seconds:8.1f} {peak:9.1f}")


if __name__ == "__main__":
    main()
