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


def visible_devices_value(device: str | torch.device) -> str:
    """The `CUDA_VISIBLE_DEVICES` that shows a child process only `device` (a GPU of those this
    process sees), as its `cuda:0`."""
    index = torch.device(device).index or 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[index] if visible else str(index)


def release_memory() -> None:
    """Give the memory of dropped models back (to the GPU, for the next stage's process)."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
