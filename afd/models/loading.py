"""Loading policies and scalar-head classifiers from Hugging Face directories, in a dtype, with
embeddings sized for the tokenizer (which may have gained a pad token)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from afd.core.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: str, key: str) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"{key} must be one of {sorted(DTYPES)}, got {dtype!r}")


def resize_for_tokenizer(model, tokenizer) -> None:
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if getattr(model, "generation_config", None) is not None:  # classifiers have none
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id


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
