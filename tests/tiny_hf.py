"""Tiny local stand-ins for the Hub models of the HH experiments, saved in HF format.

`gpt2_like_tokenizer` mimics GPT-2's tokenizer (byte-level BPE, one <|endoftext|> token as
BOS/EOS, no pad token); `gemma_like_tokenizer` mimics Gemma's (its own pad, BOS added to
every text, a chat template that renders BOS). The policy is a GPT-2 LM, the golden
reward models GPT-2 sequence classifiers with pad = EOS in their config, like the Ray2333
reward models.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

ROOT = Path(__file__).resolve().parents[1]
HH_DIR = Path(os.environ.get("AFD_HH_RLHF_DIR", ROOT.parent / "shared" / "data" / "hh-rlhf"))
HH_HARMLESS_TEST = HH_DIR / "harmless-base" / "test.jsonl.gz"
ENDOFTEXT = "<|endoftext|>"
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def hh_texts(limit: int = 400) -> list[str]:
    if not HH_HARMLESS_TEST.is_file():
        raise FileNotFoundError(
            f"the real HH-RLHF test file is missing: {HH_HARMLESS_TEST} "
            "(set AFD_HH_RLHF_DIR to the directory holding harmless-base/)"
        )
    with gzip.open(HH_HARMLESS_TEST, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(limit), f)]
    return [t for r in rows for t in (r["chosen"], r["rejected"])]


def _bpe(texts, vocab_size: int, specials: list[str]) -> Tokenizer:
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return core


def gpt2_like_tokenizer(texts, vocab_size: int = 768) -> PreTrainedTokenizerFast:
    core = _bpe(texts, vocab_size, [ENDOFTEXT])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT
    )


def gemma_like_tokenizer(texts, vocab_size: int = 768) -> PreTrainedTokenizerFast:
    core = _bpe(texts, vocab_size, ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"])
    bos = core.token_to_id("<bos>")
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    tok.chat_template = GEMMA_TEMPLATE
    return tok


def _config(tok, n_positions: int, seed: int, **extra) -> GPT2Config:
    torch.manual_seed(seed)
    return GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **extra,
    )


def save_policy(out: Path, tok, n_positions: int = 256, seed: int = 0) -> Path:
    GPT2LMHeadModel(_config(tok, n_positions, seed)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_reward_model(out: Path, tok, n_positions: int = 512, seed: int = 1) -> Path:
    pad = (
        tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    )  # GPT-2 RMs: pad = EOS
    model = GPT2ForSequenceClassification(
        _config(tok, n_positions, seed, num_labels=1, pad_token_id=pad)
    )
    with torch.no_grad():  # rewards of a size that separates responses
        model.score.weight.normal_(0, 1.0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_tiny_hh_models(root: Path) -> dict[str, Path]:
    texts = hh_texts()
    gpt2_tok, gemma_tok = gpt2_like_tokenizer(texts), gemma_like_tokenizer(texts)
    return {
        "policy": save_policy(root / "policy", gpt2_tok),
        "gold": save_reward_model(root / "gold", gpt2_tok),
        "gold_chat": save_reward_model(root / "gold_chat", gemma_tok),
        "gemma_policy": save_policy(root / "gemma_policy", gemma_tok),
    }
