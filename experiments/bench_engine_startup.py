"""vLLM engine start-up on CPU with the KV cache sized to the model against the whole
`sampling.kv_cache_gib`, alternated in one run: cold (a new engine process: vLLM imported, the
model loaded, the cache allocated) and from a standby (vLLM already imported).

    python experiments/bench_engine_startup.py                 # 3 rounds, kv_cache_gib 2
    python experiments/bench_engine_startup.py --rounds 5 --kv-cache-gib 4

vLLM zero-fills its KV cache as it starts. afd allocates at most what `max_num_seqs` sequences of
the model's whole context can fill (VLLMEngine.cpu_cache): a few MiB for the toy's GPT-2 (2 x 128,
64 positions), 1 GiB for the benchmark's tiny GPT-2 (4 x 256, 512 positions), all of it for
SmolLM2 (not timed here: its cache is the whole setting either way). CPU only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_sampling import cpu_name, tiny_gpt2  # noqa: E402

from afd.models.generation import vllm  # noqa: E402
from afd.models.generation.settings import SamplingSettings  # noqa: E402
from afd.models.options import LoadOptions  # noqa: E402


def whole_setting(engine, path, dtype) -> dict:
    """The KV cache as vLLM takes it without afd's sizing: all of `kv_cache_gib`."""
    return {"kv_cache_memory_bytes": round(engine.kv_cache_gib * 2**30)}


SIZED = vllm.VLLMEngine.cpu_cache
CACHES = {"sized": SIZED, "whole": whole_setting}


def startups(engine, path: Path, cache) -> tuple[float, float]:
    """(cold, from a standby) seconds to open the engine on `path` with the `cache` sizing."""
    vllm.VLLMEngine.cpu_cache = cache
    settings, load = engine.settings, LoadOptions()
    vllm.close_kept_engines()
    start = time.perf_counter()
    with engine.open(path, load, settings, progress=False):
        cold = time.perf_counter() - start
    vllm.close_kept_engines()
    engine.start_standby()
    engine.wait_for_standby()
    start = time.perf_counter()
    with engine.open(path, load, settings, progress=False):
        standby = time.perf_counter() - start
    vllm.close_kept_engines()
    return cold, standby


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kv-cache-gib", type=float, default=2.0)
    args = parser.parse_args()
    if not vllm.VLLMEngine.runs_on_cpu() or not vllm.VLLMEngine.available():
        sys.exit("this benchmark needs vLLM's CPU build and no GPU")
    print(f"machine: {cpu_name()}, kv_cache_gib {args.kv_cache_gib}")
    settings = SamplingSettings(16, 1.0, 1.0, 0, [])
    engine = vllm.VLLMEngine(
        **vars(settings) | {"stop_strings": []},
        gpu_memory_utilization=0.5,
        tensor_parallel_size=1,
        data_parallel_size=1,
        kv_cache_gib=args.kv_cache_gib,
        enforce_eager=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "toy GPT-2 (2 x 128, 64 positions)": tiny_gpt2(Path(tmp) / "toy", 2, 128, 64, 1024),
            "tiny GPT-2 (4 x 256, 512 positions)": tiny_gpt2(Path(tmp) / "tiny"),
        }
        for name, path in models.items():
            sized = SIZED(engine, str(path), "float32")["kv_cache_memory_bytes"] / 2**20
            print(f"\n{name}: KV cache sized {sized:.0f} MiB, whole {args.kv_cache_gib} GiB")
            times = {kind: [] for kind in CACHES}
            for round_ in range(args.rounds):
                for kind, cache in CACHES.items():  # alternated: the machine drifts alike
                    cold, standby = startups(engine, path, cache)
                    times[kind].append((cold, standby))
                    print(f"  round {round_} {kind:5s} cold {cold:5.1f} s, standby {standby:.1f} s")
            med = {
                k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in times.items()
            }
            for i, what in enumerate(("cold", "standby")):
                s, w = med["sized"][i], med["whole"][i]
                print(f"  median {what:7s}: sized {s:5.1f} s, whole {w:5.1f} s ({w / s:.2f}x)")
    vllm.VLLMEngine.cpu_cache = SIZED


if __name__ == "__main__":
    main()
