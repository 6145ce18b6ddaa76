"""Model and tokenizer factories: tiny GPT-2s built from config, or any HF checkpoint.

`conf/model/*.yaml` instantiates one of the specs below. A spec either builds a fresh
model that the `pretrain` stage trains (the synthetic task) or loads pretrained weights.
Every tokenizer leaves here with a pad token distinct from EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def word_tokenizer(vocabulary: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a closed vocabulary (texts are space-separated words)."""
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *vocabulary])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, bos_token=EOS
    )
    tok.padding_side = "left"
    return tok


def bpe_tokenizer(texts, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained in-process on `texts` (GPT-2 style, exact round trip)."""
    from tokenizers import decoders, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, bos_token=EOS
    )
    tok.padding_side = "left"
    return tok


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token that is not EOS: padding must never mask a real EOS."""
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD})
    return tokenizer


def resize_for_tokenizer(model, tokenizer: PreTrainedTokenizerBase) -> None:
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id


@dataclass
class TinyGPT2:
    """A GPT-2 built from scratch on the task's own vocabulary; the `pretrain` stage trains it."""

    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 64
    dropout: float = 0.0
    bpe_vocab_size: int = 512  # when the task has no closed vocabulary
    needs_pretraining: bool = True

    def build_tokenizer(self, vocabulary: list[str] | None, texts) -> PreTrainedTokenizerFast:
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


@dataclass
class PretrainedModel:
    """Any causal LM on disk or on the Hub (`name_or_path`), used as the initial policy.

    `dtype`, `gradient_checkpointing` and `lora` (a dict of afd.finetune.LoraSpec fields, or
    None for full fine-tuning) apply to every stage that trains or runs it; remote code
    from the Hub runs only with `trust_remote_code=true`.
    """

    name_or_path: str
    dtype: str = "float32"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    lora: dict | None = None
    needs_pretraining: bool = False

    def __post_init__(self):
        from afd.finetune import lora_spec

        if not self.name_or_path:
            raise ValueError(
                "model.name_or_path is empty: give a Hub id (gpt2) or a local directory"
            )
        check_dtype(self.dtype, "model.dtype")
        lora_spec(self.lora)

    def hub_resources(self) -> list:
        from afd.hub import HubResource

        return [HubResource(self.name_or_path, "model", "model.name_or_path", "policy")]

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        return load_tokenizer(self.name_or_path, self.trust_remote_code)

    def load(self, tokenizer: PreTrainedTokenizerBase):
        return load_policy(self.name_or_path, tokenizer, self.dtype, self.trust_remote_code)


def check_dtype(dtype: str, key: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"{key} must be one of {sorted(DTYPES)}, got {dtype!r}")


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    ensure_pad_token(tok)
    tok.padding_side = "left"
    return tok


def load_policy(path, tokenizer, dtype: str = "float32", trust_remote_code: bool = False):
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
    )
    resize_for_tokenizer(model, tokenizer)
    return model


def load_classifier(path, tokenizer, dtype: str = "float32", trust_remote_code: bool = False):
    """A sequence classifier with one output (the reward); a fresh head if `path` is an LM."""
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=1, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
    )
    resize_for_tokenizer(model, tokenizer)
    return model
