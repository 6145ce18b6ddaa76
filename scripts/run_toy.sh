#!/usr/bin/env bash
# Install afd into .venv (CPU torch first) and run the default sweep on the synthetic task.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e .
python -m afd.train +experiment=toy -m n=4,16,64 "$@"
