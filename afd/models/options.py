"""How stages load and adapt a model: dtype, remote code, gradient checkpointing, LoRA.

`ModelOptions` comes from the model spec (`conf/model/*.yaml`) and travels to every stage
that trains (SFT, reward models, adversarial, distillation), in the job's process or in a
stage's worker processes (afd/runtime/launch.py); its `load` part (dtype, remote code) is all
that inference stages (sampling, scoring) read. LoRA adapters are merged into the weights
when a trained model is exported (`export_trained`, afd/runtime/trainer.py), so every
artifact is a plain Hugging Face model that later stages (and users) load with
`from_pretrained`, with no adapter loader needed; the cost is a full-size checkpoint per
trained stage instead of a few MB of adapters.
"""

from __future__ import annotations

from dataclasses import dataclass

from afd.core.errors import ConfigError

TASK_TYPES = {"causal_lm": "CAUSAL_LM", "classifier": "SEQ_CLS", "token_classifier": "TOKEN_CLS"}
# The attention projections LoRA adapts when `target_modules` is null, by model type: peft's
# own default for llama- and gemma-style models is q_proj and v_proj alone.
LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ATTENTION = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"), LLAMA_ATTENTION),
    **dict.fromkeys(("gemma3", "gemma3_text", "olmo", "olmo2", "phi3"), LLAMA_ATTENTION),
    "gpt2": ("c_attn",),
}


@dataclass(frozen=True)
class LoraSpec:
    """peft LoRA settings; `target_modules=None` adapts the architecture's attention
    projections (ATTENTION: c_attn for GPT-2, q/k/v/o for Llama- and Gemma-style models)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.r < 1:
            raise ConfigError(f"model.lora.r must be >= 1, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class LoadOptions:
    """How a stage loads a model to run it."""

    dtype: str = "float32"
    trust_remote_code: bool = False


@dataclass(frozen=True)
class ModelOptions:
    """How a stage loads a model to train it."""

    dtype: str = "float32"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    lora: LoraSpec | None = None

    @property
    def load(self) -> LoadOptions:
        return LoadOptions(self.dtype, self.trust_remote_code)


def lora_spec(value) -> LoraSpec | None:
    if value is None or isinstance(value, LoraSpec):
        return value
    value = dict(value)
    if value.get("target_modules") is not None:
        value["target_modules"] = tuple(value["target_modules"])
    try:
        return LoraSpec(**value)
    except TypeError as e:
        raise ConfigError(f"model.lora: {e}") from None


def prepare_for_training(model, options: ModelOptions, task: str = "causal_lm"):
    """Turn on gradient checkpointing and wrap in LoRA adapters, as the options ask.
    With LoRA only the adapters (and a classifier's fresh score head) train."""
    if options.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad, so it works with
        # frozen embeddings under LoRA.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if options.lora is None:
        return model
    from peft import LoraConfig, get_peft_model

    lora = options.lora
    config = LoraConfig(
        task_type=TASK_TYPES[task],
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules or ATTENTION.get(model.config.model_type, ()))
        or None,
    )
    return get_peft_model(model, config)


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
