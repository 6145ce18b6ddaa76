"""DeepSpeed training that also runs on CPU, and export of trained models to Hugging Face format.

`CPUDeepSpeedStrategy` lets CI exercise ZeRO stages 0-3 without a GPU; `export_hf_model` turns a
model trained under any strategy (or a saved checkpoint) into a plain `save_pretrained` directory.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy
from lightning.pytorch.strategies.deepspeed import remove_module_hooks


def _plain(obj: Any) -> Any:
    """Deep copy of nested mappings/sequences as plain dicts and lists.

    Lightning edits the DeepSpeed config in place and asserts it is a `dict`, while Hydra hands
    over `DictConfig`s; a config shared by several Trainers would otherwise leak state between them.
    """
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "ListConfig":
        return [_plain(v) for v in obj]
    return obj


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's `DeepSpeedStrategy`, also usable with `accelerator="cpu"`.

    Takes exactly the keyword arguments of `DeepSpeedStrategy` (`stage`, `offload_optimizer`,
    `offload_parameters`, `config`, ...). On GPUs it behaves exactly like the parent class; on CPU
    it drops the three CUDA-only assumptions Lightning makes (accelerator type, device indices and
    the `device_rank` handed to the DeepSpeed engine). DeepSpeed itself supports CPU through gloo
    and a shared-memory collective op that it compiles on first use (cached under
    `TORCH_EXTENSIONS_DIR`).
    """

    def __init__(self, *args: Any, config: Any = None, **kwargs: Any) -> None:
        if isinstance(config, Mapping):
            config = _plain(config)
        super().__init__(*args, config=config, **kwargs)

    @property
    def _on_cpu(self) -> bool:
        return isinstance(self.accelerator, CPUAccelerator)

    def setup_environment(self) -> None:
        if not self._on_cpu:
            super().setup_environment()
            return
        from deepspeed.accelerator import get_accelerator

        # DeepSpeed picks its accelerator once, at import; a CUDA choice cannot be undone safely.
        if get_accelerator().device_name() != "cpu":
            raise RuntimeError(
                "DeepSpeed selected a non-CPU accelerator but Lightning runs on CPU: "
                "set DS_ACCELERATOR=cpu in the environment before starting Python."
            )
        # DeepSpeed refuses client (torch) optimizers with offload, as they would step on the CPU
        # instead of the GPU; on a CPU run that is where every optimizer steps anyway.
        self.config.setdefault("zero_force_ds_cpu_optimizer", False)
        # DDPStrategy's version skips DeepSpeed's CUDA check and calls `setup_distributed` below.
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        if not self._on_cpu:
            super().setup_distributed()
            return
        # CPU devices carry no index, so Lightning's device-index validation cannot apply.
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    @property
    def _device_rank(self) -> int | None:
        # The engine compares `device_rank` with ints; CPU devices have index None.
        return self.local_rank if self._on_cpu else self.root_device.index

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):  # type: ignore[override]
        if not self._on_cpu:
            return super()._setup_model_and_optimizer(model, optimizer, lr_scheduler)
        import deepspeed

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank),
            config=self.config,
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer

    def _initialize_deepspeed_inference(self, model: torch.nn.Module) -> None:
        if not self._on_cpu:
            super()._initialize_deepspeed_inference(model)
            return
        import deepspeed

        # Mirrors the parent (validate/test/predict without fit), with the CPU device rank.
        inference_config: dict[str, Any] = {"train_micro_batch_size_per_gpu": 1}
        for key in ("fp16", "bf16"):
            if key in self.config:
                inference_config[key] = self.config[key]
        if self.zero_stage_3:
            inference_config["zero_allow_untested_optimizer"] = self.config[
                "zero_allow_untested_optimizer"
            ]
            inference_config["zero_optimization"] = self.config["zero_optimization"]
        remove_module_hooks(model)
        self.model, _, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank),
            config=inference_config,
            model=model,
            optimizer=None,
            lr_scheduler=None,
            model_parameters=[],
            dist_init_required=False,
        )


# --------------------------------------------------------------------------- export


def _stage0_masters(engine: Any) -> dict[int, torch.Tensor]:
    """fp32 master copies kept by DeepSpeed's stage-0 16-bit optimizer, keyed by module parameter.

    Stage 0 with bf16/fp16 pairs each module parameter with an fp32 copy in the optimizer, which
    DeepSpeed's `safe_get_full_fp32_param` does not look up.
    """
    optimizer = getattr(engine, "optimizer", None)
    if engine.zero_optimization_stage() != 0 or optimizer is None:
        return {}
    lows, highs = getattr(optimizer, "fp16_groups", None), getattr(optimizer, "fp32_groups", None)
    if not lows or not highs:
        return {}
    pairs = [pair for group in zip(lows, highs, strict=True) for pair in zip(*group, strict=True)]
    return {id(lo): hi for lo, hi in pairs if hi.shape == lo.shape}


def _full_state_dict_deepspeed(strategy: DeepSpeedStrategy, module: torch.nn.Module) -> dict:
    """Full fp32 state dict of `module`, assembled on global rank 0 (empty dict elsewhere).

    Collective: every rank must call it, in the same order. Gathering one parameter at a time
    keeps the extra memory to one tensor per rank, needs no shared filesystem (a ZeRO checkpoint
    round trip would, on several nodes) and no dump of the optimizer state. The fp32 master copy
    held by the ZeRO/bf16 optimizer is preferred over the (possibly bf16) module weights.
    """
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    engine = strategy.deepspeed_engine
    home = next(module.parameters()).device
    if home != strategy.root_device:
        # Lightning's teardown moved the module to CPU; on GPUs DeepSpeed's collectives (NCCL)
        # need it back on the device it trained on. Moved back to where it was afterwards.
        module.to(strategy.root_device)
    rank0 = strategy.is_global_zero
    masters = _stage0_masters(engine)
    full: dict[int, torch.Tensor] = {}
    for param in module.parameters():  # shared (tied) parameters come once
        value = masters.get(id(param))
        # DeepSpeed links these (on every rank alike) only when a ZeRO optimizer owns the parameter.
        owned = hasattr(param, "_hp_mapping") or hasattr(param, "_z3_optimizer")
        if value is None and param.requires_grad and owned:
            value = safe_get_full_fp32_param(param)
        if value is None:
            # Frozen, no optimizer (validate/predict only) or no master copy (stage 0 in fp32).
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                value = param.detach().clone() if rank0 else None
        if rank0:
            full[id(param)] = value.detach().to("cpu", torch.float32)
    module.to(home)
    if not rank0:
        return {}
    out = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        # Buffers are never partitioned; tied names map to the same gathered tensor.
        out[name] = full.get(id(tensor), tensor.detach().cpu())
    return out


def _state_dict_from_checkpoint(path: Path, tag: str | None) -> dict:
    """Module state dict (Lightning keys) from a checkpoint file or a DeepSpeed checkpoint dir."""
    if not path.is_dir():
        # Lightning checkpoints pickle hyper-parameters and loop state, hence weights_only=False:
        # only export checkpoints you trust.
        return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    tag = tag or (path / "latest").read_text().strip()
    if any((path / tag).glob("*optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        # ZeRO 1-3: rebuilds full weights from the fp32 master partitions of every rank.
        state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag)
    else:
        # Stage 0 keeps the optimizer inside the module file, which holds the full weights.
        (model_file,) = (path / tag).glob("mp_rank_*_model_states.pt")
        state = torch.load(model_file, map_location="cpu", weights_only=False)["module"]
        if any(v.is_floating_point() and v.dtype != torch.float32 for v in state.values()):
            warnings.warn(
                "stage-0 DeepSpeed checkpoint holds 16-bit weights; their fp32 master copy is not "
                "recovered from it (export from the live Trainer to get it)",
                stacklevel=3,
            )
    return {k.removeprefix("_forward_module."): v for k, v in state.items()}


def _fresh_copy(hf_model: torch.nn.Module) -> torch.nn.Module:
    """An fp32 model of `hf_model`'s architecture with the same parameter names, LoRA adapters
    included (built from the config: nothing of ZeRO's partitioning or hooks comes along)."""
    peft_config = getattr(hf_model, "peft_config", None)
    if peft_config is None:
        return type(hf_model)(hf_model.config).to(torch.float32)
    import copy

    from peft import get_peft_model

    base = hf_model.get_base_model()
    fresh = type(base)(base.config).to(torch.float32)
    return get_peft_model(fresh, copy.deepcopy(peft_config[hf_model.active_adapter]))


def export_hf_model(
    source: pl.Trainer | str | os.PathLike,
    lightning_module: pl.LightningModule,
    out_dir: str | os.PathLike,
    *,
    attr: str = "model",
    tag: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path | None:
    """Save `lightning_module.<attr>` (a `PreTrainedModel`, or a peft model whose LoRA adapters
    are merged into it) with full weights in `dtype` (fp32 by default), HF format.

    `source` is either the Trainer that just trained the module (plain, DDP or DeepSpeed ZeRO 0-3;
    every rank must call this, only global rank 0 writes) or a checkpoint saved by Lightning: a
    `.ckpt` file or a DeepSpeed checkpoint directory (then call it from one process). The weights
    are loaded into a fresh fp32 copy of the model built from its config, so the written directory
    is independent of ZeRO partitioning, hooks and mixed-precision casts; adapters are merged in
    fp32 before the cast to `dtype`. Returns `out_dir` on the writing rank and None elsewhere.
    """
    hf_model = getattr(lightning_module, attr)
    prefix = f"{attr}."
    if isinstance(source, pl.Trainer):
        strategy = source.strategy
        if isinstance(strategy, DeepSpeedStrategy):
            state = _full_state_dict_deepspeed(strategy, lightning_module)
        elif isinstance(strategy, FSDPStrategy):
            raise NotImplementedError(
                "export from FSDP: save a checkpoint with FSDPStrategy(state_dict_type='full') "
                "and pass its path"
            )
        else:
            state = lightning_module.state_dict() if source.is_global_zero else {}
        write = source.is_global_zero
    else:
        write = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
        state = _state_dict_from_checkpoint(Path(source), tag) if write else {}

    out = Path(out_dir)
    if write:
        weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        fresh = _fresh_copy(hf_model)
        fresh.load_state_dict(
            {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in weights.items()}
        )
        if hasattr(fresh, "merge_and_unload"):
            fresh = fresh.merge_and_unload()
        fresh.to(dtype).eval()
        out.mkdir(parents=True, exist_ok=True)
        fresh.save_pretrained(out)
    if isinstance(source, pl.Trainer):
        source.strategy.barrier("export_hf_model")  # others may read out_dir right after
    return out if write else None
