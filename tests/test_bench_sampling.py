"""The sampling benchmark's throughput ceiling counts exactly the multiplies of a decode step
and times every kernel it names (experiments/bench_sampling.py)."""

from __future__ import annotations

import pytest
from conftest import ROOT
from tiny_hf import gpt2_like_tokenizer, hh_texts, save_policy


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import bench_sampling

    return bench_sampling


@pytest.fixture
def tiny_policy(tmp_path):
    tok = gpt2_like_tokenizer(hh_texts(100), vocab_size=300)
    return save_policy(tmp_path / "policy", tok), len(tok)


def test_a_decode_step_multiplies_every_layer_and_the_head(bench, tiny_policy):
    """GPT-2 keeps its layers as Conv1D (in, out); the ceiling sees them as (out, in), with the
    output head, which shares the embedding's weights but is multiplied at every token."""
    from afd.models.loading import load_policy
    from afd.models.tokenizers import load_tokenizer

    path, tokens = tiny_policy
    model = load_policy(path, load_tokenizer(path))
    vocab = model.config.vocab_size  # the tokenizer's, and a pad token if it had none
    assert vocab in (tokens, tokens + 1)
    weights = bench.linear_weights(model)
    d = 32  # tiny_hf's width, two layers
    per_layer = [(3 * d, d), (d, d), (4 * d, d), (d, 4 * d)]
    assert sorted(tuple(w.shape) for w in weights) == sorted(per_layer * 2 + [(vocab, d)])


def test_the_ceiling_times_each_kernel_and_keeps_the_fastest(bench, tiny_policy):
    path, _ = tiny_policy
    ceiling = bench.run_gemm_ceiling(path, rows=8, repeats=2)
    assert set(ceiling["all"]) >= {"torch"} and ceiling["kernel"] in ceiling["all"]
    assert ceiling["gflops"] == max(ceiling["all"].values()) > 0
    assert ceiling["tokens_per_s"] > 0
    try:
        from vllm import _custom_ops as ops
    except ImportError:
        return  # without vLLM torch's kernel is the only one
    assert ("oneDNN" in ceiling["all"]) == bool(ops._supports_onednn)


def test_each_engine_draws_its_pools_and_the_first_is_reported_apart(bench, tiny_policy):
    """The first pool pays one-off work; the later ones are summed into the steady rate."""
    from afd.models.batching import Lengths
    from afd.models.generation.settings import SamplingSettings

    path, _ = tiny_policy
    settings = SamplingSettings(6, 1.0, 1.0, 0)
    prompts = ["\n\nHuman: hello there\n\nAssistant:", "\n\nHuman: how are you?\n\nAssistant:"]
    result = bench.run_hf(path, prompts, 3, settings, Lengths(64, 6), draws=3)
    pools = result["draws"]
    assert len(pools) == 3
    assert all(0 < p["tokens"] <= 2 * 3 * 6 and p["wall_s"] > 0 for p in pools)

    first, later = bench.throughput(result, "first"), bench.throughput(result, "later")
    assert first["tokens"] == pools[0]["tokens"]
    assert later["tokens"] == pools[1]["tokens"] + pools[2]["tokens"]
    assert later["wall"] == pytest.approx(
        later["tokens"] / (pools[1]["wall_s"] + pools[2]["wall_s"])
    )
    result["draws"] = pools[:1]
    assert bench.throughput(result, "later") is None
