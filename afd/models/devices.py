"""Where inference runs: sampling and scoring use the GPU when there is one.

Training stages get their device from the Lightning Trainer (`conf/trainer/`); generation
and scoring run outside it, so they pick the device here. `AFD_INFERENCE_DEVICE` overrides
the choice (e.g. `cpu` to keep a GPU free, `cuda:1` for another card).
"""

from __future__ import annotations

import os

import torch


def inference_device() -> torch.device:
    chosen = os.environ.get("AFD_INFERENCE_DEVICE")
    if chosen:
        return torch.device(chosen)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
