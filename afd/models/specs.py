"""Model specs, the `_target_`s of `conf/model/*.yaml`: how the initial policy pi0 comes to be.

`TinyGPT2` is built from scratch on the task's vocabulary and pretrained by the `pretrain`
stage (the synthetic task); `PretrainedModel` loads any causal LM from disk or the Hub. Both
say how every later stage loads and trains models (`options()`: dtype, LoRA, checkpointing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from afd.core.errors import ConfigError
from afd.core.hub import HubResource
from afd.models.dialogue import PlainText
from afd.models.gguf import GGUFSource
from afd.models.loading import (
    attention_head_size,
    check_dtype,
    check_model_source,
    context_length,
)
from afd.models.options import ModelOptions, lora_spec
from afd.models.tokenizers import bpe_tokenizer, word_tokenizer


@dataclass
class TinyGPT2:
    """A GPT-2 built from scratch on the task's own vocabulary; the `pretrain` stage trains it."""

    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 64
    dropout: float = 0.0
    bpe_vocab_size: int = 512  # when the task has no closed vocabulary

    def options(self) -> ModelOptions:
        return ModelOptions()

    def context_length(self) -> int:
        return self.n_positions

    def attention_head_size(self) -> int:
        return self.n_embd // self.n_head

    def dialogue_format(self) -> PlainText:
        return PlainText()

    def build_tokenizer(self, vocabulary: list[str] | None, texts) -> PreTrainedTokenizerBase:
        """Word-level over a closed vocabulary if the task has one, else BPE on its corpus."""
        return (
            word_tokenizer(vocabulary) if vocabulary else bpe_tokenizer(texts, self.bpe_vocab_size)
        )

    def build(self, tokenizer: PreTrainedTokenizerBase) -> GPT2LMHeadModel:
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=self.n_positions,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return GPT2LMHeadModel(config)


WEIGHTS = ("auto", "hub", "gguf")


@dataclass
class PretrainedModel:
    """Any causal LM on disk or on the Hub (`name_or_path`), used as the initial policy.

    `dtype`, `gradient_checkpointing` and `lora` (a dict of afd.models.options.LoraSpec
    fields, or None for full fine-tuning) apply to every stage that trains or runs it; remote
    code from the Hub runs only with `trust_remote_code=true`. `format` says how the policy
    reads a dialogue: the HH text itself, or its own chat template.

    `gguf` names a package that ships the same model as a GGUF file (afd/models/gguf.py);
    `weights: auto` loads `name_or_path` where the Hub (or its cache) has it and converts the
    GGUF file otherwise, `hub` and `gguf` insist on one.
    """

    name_or_path: str
    dtype: str = "float32"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    lora: dict | None = None
    format: Any = None  # afd.models.dialogue.PlainText (None) or ChatTemplate
    gguf: dict | None = None  # GGUFSource fields
    weights: str = "auto"

    def __post_init__(self):
        if not self.name_or_path:
            raise ConfigError(
                "model.name_or_path is empty: give a Hub id (gpt2) or a local directory"
            )
        check_dtype(self.dtype, "model.dtype")
        lora_spec(self.lora)
        if self.weights not in WEIGHTS:
            raise ConfigError(f"model.weights must be one of {WEIGHTS}, got {self.weights!r}")
        self.format = self.format or PlainText()
        self._gguf = GGUFSource(**self.gguf) if self.gguf else None
        if self._gguf is None and self.weights == "gguf":
            raise ConfigError("model.weights=gguf, but model.gguf names no GGUF file")
        if self._gguf is None or self.weights == "hub":
            check_model_source(self.name_or_path, "model.name_or_path")
        else:
            self._version = self._gguf.check_installed()

    def context_length(self) -> int | None:
        return context_length(self.name_or_path)

    def attention_head_size(self) -> int | None:
        return attention_head_size(self.name_or_path)

    def dialogue_format(self):
        """How the policy reads a dialogue: PlainText (the HH text) or ChatTemplate."""
        return self.format

    def options(self) -> ModelOptions:
        return ModelOptions(
            dtype=self.dtype,
            trust_remote_code=bool(self.trust_remote_code),
            gradient_checkpointing=bool(self.gradient_checkpointing),
            lora=lora_spec(self.lora),
        )

    def uses_gguf(self, unavailable: set[str]) -> bool:
        """Whether pi0 comes from the GGUF file: asked for, or the Hub id is out of reach."""
        if self._gguf is None or self.weights == "hub":
            return False
        return self.weights == "gguf" or self.name_or_path in unavailable

    def conversion(self):
        """The stage that converts the GGUF file (keyed by its hash, or the assembling
        package's version)."""
        from afd.models.gguf import sha256

        source = self._gguf
        identity = f"{source.package}=={self._version}"
        if source.file is not None:
            identity = sha256(source.located())
        return source, identity

    def source(self) -> dict:
        """What pi0 is: the weights it loads. LoRA, checkpointing and dtype say how later
        stages train and run it, not what it is, so they are no part of its identity."""
        return {"name_or_path": self.name_or_path}

    def hub_resources(self) -> list:
        fallback = f"the GGUF file of {self._gguf.package}" if self._gguf else None
        return [
            HubResource(
                self.name_or_path, "model", "model.name_or_path", "policy", fallback=fallback
            )
        ]
