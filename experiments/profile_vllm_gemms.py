"""Where vLLM's CPU engine spends a Best-of-n pool: the time and FLOPs of its matrix multiplies
(prefill and decode apart) against the pool's wall time, the rest being attention, sampling and
scheduling. The pool is the one experiments/bench_sampling.py draws (16 HH prompts x 16
samples, up to 64 tokens, fp32) with the options afd's engine uses on CPU.

    python experiments/profile_vllm_gemms.py                  # block size 32, afd's
    python experiments/profile_vllm_gemms.py --block-size 128 # vLLM's CPU default

It times every call of the oneDNN kernel vLLM's CPU build runs its linear layers with, in the
engine's own process (the engine runs in this one); a call on more rows than the pool has
sequences is counted as prefill. CPU only.
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
    from vllm import _custom_ops as ops

    from afd.models.batching import Lengths, encode_prompt
    from afd.models.tokenizers import load_tokenizer

    stats: Counter = Counter()
    onednn_mm = ops.onednn_mm

    def timed(handler, x, bias):
        start = time.perf_counter()
        y = onednn_mm(handler, x, bias)
        phase = "decode" if x.shape[0] <= args.prompts * args.n else "prefill"
        stats[f"{phase}_s"] += time.perf_counter() - start
        stats[f"{phase}_flop"] += 2 * x.shape[0] * x.shape[1] * y.shape[1]
        return y

    ops.onednn_mm = timed  # vLLM's linear layers look it up at every call
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
        params = SamplingParams(n=args.n, temperature=1.0, max_tokens=args.tokens, logprobs=0)
        stats.clear()  # the engine's own warm-up is not the pool's
        start = time.perf_counter()
        out = llm.generate([{"prompt_token_ids": i} for i in ids], params, use_tqdm=False)
        wall = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for o in out for c in o.outputs)
    prompt_flop = sum(len(i) for i in ids) * stats["decode_flop"] / max(tokens, 1)
    gemm_s = stats["prefill_s"] + stats["decode_s"]
    print(f"block size {args.block_size}: {tokens} tokens in {wall:.1f} s, {tokens / wall:.1f}/s")
    for phase in ("prefill", "decode"):
        s, flop = stats[f"{phase}_s"], stats[f"{phase}_flop"]
        rate = flop / s / 1e9 if s else 0.0
        print(f"  {phase:<8} multiplies {s:5.1f} s, {flop / 1e12:.2f} TFLOP, {rate:.0f} GFLOP/s")
    print(f"  each prompt prefilled once: about {prompt_flop / 1e12:.2f} TFLOP")
    print(f"  everything else (attention, sampling, scheduling) {wall - gemm_s:.1f} s")


if __name__ == "__main__":
    main()
