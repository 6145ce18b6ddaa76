"""The CPU engine's KV cache: what a token takes, read from the model's config, and the cache
afd asks vLLM for: `sampling.kv_cache_gib` (fractions too), or less where the model could never
fill it. The real engine's use of it is checked in tests/test_engines.py."""

from __future__ import annotations

import json
import os

import pytest

from afd.models.generation.vllm import CPU_OPTIONS, VLLMEngine
from afd.models.generation.vllm_process import apply_environment
from afd.models.loading import kv_cache_bytes_per_token

GPT2 = {"n_layer": 2, "n_head": 4, "n_embd": 128, "n_positions": 64}
SMOLLM2 = {  # grouped-query attention: 3 key/value heads for 9 query heads
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "hidden_size": 576,
    "max_position_embeddings": 8192,
}
GEMMA3_270M = {  # a head width of its own, not hidden_size / heads
    "num_hidden_layers": 18,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "hidden_size": 640,
    "head_dim": 256,
    "max_position_embeddings": 32768,
}


def model(tmp_path, fields: dict) -> str:
    (tmp_path / "config.json").write_text(json.dumps(fields))
    return str(tmp_path)


def engine(kv_cache_gib: float = 2.0) -> VLLMEngine:
    return VLLMEngine(
        max_new_tokens=16,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        stop_strings=[],
        gpu_memory_utilization=0.5,
        tensor_parallel_size=1,
        data_parallel_size=1,
        kv_cache_gib=kv_cache_gib,
        enforce_eager=True,
    )


@pytest.mark.parametrize(
    "fields, dtype, expected",
    [
        (GPT2, "float32", 2 * 2 * 4 * 32 * 4),  # keys and values x layers x heads x width x bytes
        (SMOLLM2, "float32", 2 * 30 * 3 * 64 * 4),  # vLLM: 46,592 tokens in 2 GiB
        (SMOLLM2, "bfloat16", 2 * 30 * 3 * 64 * 2),
        (GEMMA3_270M, "float32", 2 * 18 * 1 * 256 * 4),
        ({"n_layer": 2}, "float32", None),  # no heads: unknown
    ],
)
def test_a_token_s_keys_and_values_come_from_the_config(tmp_path, fields, dtype, expected):
    assert kv_cache_bytes_per_token(model(tmp_path, fields), dtype) == expected


def test_a_model_without_a_config_has_no_known_size(tmp_path):
    assert kv_cache_bytes_per_token(str(tmp_path), "float32") is None


def test_a_small_model_gets_the_cache_its_sequences_can_fill(tmp_path):
    """256 sequences of 64 positions, in blocks of 32, and vLLM's null block: 32 MiB, not 2 GiB."""
    blocks = CPU_OPTIONS["max_num_seqs"] * 2 + 1
    assert engine().cpu_cache(model(tmp_path, GPT2), "float32") == {
        "kv_cache_memory_bytes": blocks * 32 * 2048,
        "max_model_len": 64,
    }


def test_a_model_that_could_fill_more_gets_the_whole_setting(tmp_path):
    assert engine(2).cpu_cache(model(tmp_path, SMOLLM2), "float32") == {
        "kv_cache_memory_bytes": 2 * 2**30
    }


def test_a_fraction_of_a_gib_is_honoured(tmp_path):
    """vLLM's own CPU setting takes whole GiB; afd's passes bytes."""
    assert engine(0.25).cpu_cache(model(tmp_path, GEMMA3_270M), "float32") == {
        "kv_cache_memory_bytes": 2**28
    }


def test_an_unknown_model_gets_the_whole_setting(tmp_path):
    assert engine(1.5).cpu_cache(str(tmp_path), "float32") == {"kv_cache_memory_bytes": 3 * 2**29}


def test_the_engine_process_drops_vllm_s_whole_gib_setting(monkeypatch):
    """An inherited VLLM_CPU_KVCACHE_SPACE would override sampling.kv_cache_gib in vLLM."""
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "7")
    env = engine().environment(0)
    assert env["VLLM_CPU_KVCACHE_SPACE"] is None
    for name in env:  # each restored after the test, as it was
        monkeypatch.setenv(name, "this process's")
    apply_environment(env)
    assert "VLLM_CPU_KVCACHE_SPACE" not in os.environ
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
