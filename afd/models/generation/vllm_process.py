"""vLLM's engine process: it imports vLLM as soon as it starts, then loads a model when
asked and answers generate requests (afd/models/generation/vllm.py sends them)."""

from __future__ import annotations

import ctypes.util
import functools
import multiprocessing
import os
import traceback
from contextlib import contextmanager

from afd.models.devices import release_memory
from afd.models.generation.settings import Completion, cut_at_stop


def completion(output, eos: int, stops) -> Completion:
    """One vLLM CompletionOutput as afd's Completion."""
    ids = list(output.token_ids)
    by_eos = output.finish_reason == "stop" and output.stop_reason is None and eos in ids[-1:]
    by_stop = output.finish_reason == "stop" and isinstance(output.stop_reason, str)
    body = ids[:-1] if by_eos else ids
    text, cut = cut_at_stop(output.text, stops)
    logprob = float(sum(step[t].logprob for step, t in zip(output.logprobs, ids)))
    return Completion(text.strip(), by_eos or by_stop or cut, len(body), ids, logprob)


def serve(conn, env: dict) -> None:
    """An engine process: load a model on ("load", path, load, options), answer generate
    requests, drop it on ("unload",); None ends the process. vLLM is imported once for all
    the models it serves (the import takes most of an engine's start-up)."""
    apply_environment(env)
    llm = None
    try:
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt

        conn.send(("started", None))
        while (request := conn.recv()) is not None:
            if request[0] == "load":
                _, path, load, options = request
                llm = LLM(
                    model=path,
                    dtype=load.dtype,
                    trust_remote_code=load.trust_remote_code,
                    enable_prefix_caching=True,
                    seed=0,
                    **options,
                )
                conn.send(("ready", None))
                continue
            if request[0] == "unload":
                llm = None
                release_memory()
                conn.send(("ready", None))
                continue
            _, prompts, first, num_samples, seed, bias, cfg, eos = request
            draws = 1 if cfg.greedy else num_samples  # greedy: one decode, the same n times
            params = [
                SamplingParams(
                    n=draws,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    top_k=cfg.top_k,
                    max_tokens=cfg.max_new_tokens,
                    stop=list(cfg.stop_strings) or None,
                    seed=seed * 1_000_003 + first + i,
                    logprobs=0,  # the sampled token's own log-probability
                    logit_bias=bias or None,
                    skip_special_tokens=True,
                )
                for i in range(len(prompts))
            ]
            requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
            outputs = llm.generate(requests, params, use_tqdm=False)
            replies = [
                [completion(o, eos, cfg.stop_strings) for o in r.outputs] * (num_samples // draws)
                for r in outputs
            ]
            conn.send(("done", replies))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def apply_environment(env: dict) -> None:
    """`env` into this process's environment; a variable that is None there is unset."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# What the dynamic loader reads when a process starts: set in `serve`, they would come too late.
LOADER_VARIABLES = ("LD_PRELOAD",)


@functools.cache
def tcmalloc() -> str | None:
    """The tcmalloc library installed on this machine (Debian: libtcmalloc-minimal4), or None.
    vLLM's CPU engine allocates tensors at every step of eager mode, and asks for it."""
    return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")


def with_preload(library: str | None, env: dict) -> dict:
    """`env` with `library` loaded first in the process it starts, before any already asked."""
    if library is None:
        return env
    earlier = os.environ.get("LD_PRELOAD", "")
    return env | {"LD_PRELOAD": f"{library}:{earlier}" if earlier else library}


@contextmanager
def loader_environment(env: dict):
    """The loader variables of `env` in this process's environment while a child starts
    (a spawned process inherits it), restored after."""
    saved = {k: os.environ.get(k) for k in LOADER_VARIABLES if k in env}
    os.environ.update({k: env[k] for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def process_key(env: dict) -> tuple:
    """What tells engine processes apart: the environment each was started with."""
    return tuple(sorted(env.items()))


class EngineProcess:
    """One engine process and its pipe. It imports vLLM as soon as it starts and says so; no
    model is loaded until asked."""

    def __init__(self, env: dict):
        spawn = multiprocessing.get_context("spawn")
        self.conn, child = spawn.Pipe()
        self.process = spawn.Process(target=serve, args=(child, env), daemon=True)
        with loader_environment(env):
            self.process.start()
        self.env = env
        self.key = process_key(env)
        self.started = False  # vLLM imported (its message received)
        self.failed = False  # it sent an error, and ends

    def wait_started(self) -> None:
        if not self.started:
            self._receive()
            self.started = True

    def ask(self, *request):
        self.wait_started()
        self.conn.send(request)
        return self._receive()

    def _receive(self):
        try:
            return receive(self.conn)
        except (RuntimeError, EOFError):
            self.failed = True
            raise

    def alive(self) -> bool:
        """Running and able to take requests: not ending after an error of its own."""
        return not self.failed and self.process.is_alive()

    def close(self) -> None:
        """Ends the process: asked to, once vLLM is imported and no model is left to release;
        a process still importing has nothing to release and is killed."""
        if self.started or self.conn.poll():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def receive(conn):
    kind, value = conn.recv()
    if kind == "error":
        raise RuntimeError(f"the vLLM engine process failed:\n{value}")
    return value
