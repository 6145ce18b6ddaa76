"""Where vLLM's CPU engine spends a Best-of-n pool: its matrix multiplies (prefill, decode and
the output head apart, with their FLOPs and rate), its attention, its sampler and its
element-wise layers, against the pool's wall time; what is left is rotary embeddings,
input preparation, scheduling and output processing. The pool is the one
experiments/bench_sampling.py draws (16 HH prompts x 16 samples, up to 64 tokens, fp32) with
the options afd's engine uses on CPU, drawn twice: the first draw also pays one-off work
(vLLM compiles its log-probability rank kernel on first use).

    python experiments/profile_vllm.py                  # block size 32, afd's
    python experiments/profile_vllm.py --block-size 128 # vLLM's CPU default

The engine runs in this process (give it the allocator afd's engine process has, where
tcmalloc is installed: LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 on
Debian); each part is timed around its calls (CPU work is
synchronous), the multiplies around every call of the oneDNN kernel vLLM's CPU build runs its
linear layers with, a call on more rows than the pool has sequences counted as prefill. CPU
only, eager (`sampling.enforce_eager`, afd's default; compiled, vLLM fuses the element-wise
layers and the timing wrappers would break its graphs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from afd.models.generation.vllm import CPU_OPTIONS  # noqa: E402

PARTS = {  # what each timed part is, by the vLLM layer timed
    "attention": "attention (CPU kernels and KV-cache writes)",
    "sampler": "sampling (Gumbel-max, log-softmax, ranks of sampled tokens)",
    "elementwise": "RMSNorm and SiLU-and-multiply (unfused in eager mode)",
}


def instrument(stats: Counter, sequences: int) -> None:
    """Wraps vLLM's layers and its oneDNN multiply with timers adding to `stats`."""
    import vllm.model_executor.layers.activation as activation
    import vllm.model_executor.layers.attention.attention as attention
    import vllm.model_executor.layers.layernorm as layernorm
    import vllm.model_executor.layers.logits_processor as logits_processor
    import vllm.v1.sample.sampler as sampler
    from vllm import _custom_ops as ops

    inside_head = [False]

    def timed(cls, part: str):
        forward = cls.forward

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = forward(*args, **kwargs)
            stats[f"{part}_s"] += time.perf_counter() - start
            return out

        cls.forward = wrapper

    timed(attention.Attention, "attention")
    timed(sampler.Sampler, "sampler")
    timed(layernorm.RMSNorm, "elementwise")
    timed(activation.SiluAndMul, "elementwise")

    head_forward = logits_processor.LogitsProcessor.forward

    def head(*args, **kwargs):
        inside_head[0] = True
        try:
            return head_forward(*args, **kwargs)
        finally:
            inside_head[0] = False

    logits_processor.LogitsProcessor.forward = head
    onednn_mm = ops.onednn_mm

    def multiply(handler, x, bias):
        start = time.perf_counter()
        y = onednn_mm(handler, x, bias)
        if inside_head[0]:
            phase = "head"
        else:
            phase = "decode" if x.shape[0] <= sequences else "prefill"
        stats[f"{phase}_s"] += time.perf_counter() - start
        stats[f"{phase}_flop"] += 2 * x.shape[0] * x.shape[1] * y.shape[1]
        return y

    ops.onednn_mm = multiply  # vLLM's linear layers look it up at every call


def report(stats: Counter, wall: float, tokens: int, prompt_tokens: int) -> None:
    print(f"  {tokens} tokens in {wall:.1f} s, {tokens / wall:.1f} tokens/s")
    accounted = 0.0
    for phase in ("prefill", "decode", "head"):
        s, flop = stats[f"{phase}_s"], stats[f"{phase}_flop"]
        rate = flop / s / 1e9 if s else 0.0
        accounted += s
        print(
            f"    {phase + ' multiplies':<20} {s:5.1f} s  {flop / 1e12:.2f} TFLOP, "
            f"{rate:.0f} GFLOP/s"
        )
    once = prompt_tokens * stats["decode_flop"] / max(tokens, 1)
    print(f"    {'':<20}          (each prompt prefilled once: about {once / 1e12:.2f} TFLOP)")
    for part, what in PARTS.items():
        accounted += stats[f"{part}_s"]
        print(f"    {part:<20} {stats[f'{part}_s']:5.1f} s  {what}")
    print(f"    {'rest':<20} {wall - accounted:5.1f} s  rotary, inputs, scheduling, outputs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--block-size", type=int, default=CPU_OPTIONS["block_size"])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="2")

    import bench_sampling
    from vllm import LLM, SamplingParams

    from afd.models.batching import Lengths, encode_prompt
    from afd.models.tokenizers import load_tokenizer

    stats: Counter = Counter()
    instrument(stats, args.prompts * args.n)
    with tempfile.TemporaryDirectory() as tmp:
        path = bench_sampling.smollm2(Path(tmp) / "smollm2")
        llm = LLM(
            model=str(path),
            dtype="float32",
            enforce_eager=True,
            seed=0,
            enable_prefix_caching=True,
            **CPU_OPTIONS | {"block_size": args.block_size},
        )
        tok = load_tokenizer(path)
        prompts, _ = bench_sampling.prompts_and_pairs(args.prompts)
        ids = [encode_prompt(tok, p, Lengths(256, args.tokens)) for p in prompts]
        print(
            f"block size {args.block_size}, {args.prompts} prompts x {args.n} samples, "
            f"up to {args.tokens} tokens"
        )
        for seed, draw in enumerate(("first", "second")):
            llm.reset_prefix_cache()  # the second draw prefills its prompts again
            params = SamplingParams(
                n=args.n, temperature=1.0, max_tokens=args.tokens, logprobs=0, seed=seed
            )
            stats.clear()  # the engine's own warm-up is not the pool's
            start = time.perf_counter()
            out = llm.generate([{"prompt_token_ids": i} for i in ids], params, use_tqdm=False)
            wall = time.perf_counter() - start
            tokens = sum(len(c.token_ids) for o in out for c in o.outputs)
            print(f"{draw} draw:")
            report(stats, wall, tokens, sum(map(len, ids)))


if __name__ == "__main__":
    main()
