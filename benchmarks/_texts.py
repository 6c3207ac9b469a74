"""Realistic inputs cut from real text (this repository's README and modeling code): token ids, texts of mixed
lengths, and fixed-length token batches, so every variant of a benchmark sees the same input."""

import random

import torch
from _paths import ROOT


def text_token_ids(tokenizer, n_tokens: int) -> list[int]:
    """`n_tokens` token ids of real English/Python text (this repository's README and modeling code), no specials."""
    text = (ROOT / "README.md").read_text() + (ROOT / "modeling_nvembed.py").read_text()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    while len(ids) < n_tokens:
        ids = ids + ids
    return ids[:n_tokens]


def mixed_corpus(tokenizer, n: int, min_tokens: int, max_tokens: int, seed: int = 0) -> list[str]:
    """`n` texts cut from real text, lengths log-uniform in [min_tokens, max_tokens] tokens."""
    rng = random.Random(seed)
    ids = text_token_ids(tokenizer, 20000)
    texts = []
    for _ in range(n):
        length = int(round(min_tokens * (max_tokens / min_tokens) ** rng.random()))
        start = rng.randrange(0, len(ids) - length)
        texts.append(tokenizer.decode(ids[start : start + length]).strip() or "text")
    return texts


def token_batch(tokenizer, batch_size: int, length: int, device: str = "cpu", offset: int = 0) -> dict:
    """A right-padded-free batch of `batch_size` rows of exactly `length` tokens (text, then EOS), with its pool mask.

    Rows are different windows of real text, so every variant sees the same realistic input.
    """
    ids = text_token_ids(tokenizer, offset + batch_size * length + length)
    rows = []
    for b in range(batch_size):
        start = offset + b * (length - 1)
        rows.append(ids[start : start + length - 1] + [tokenizer.eos_token_id])
    input_ids = torch.tensor(rows, device=device)
    attention_mask = torch.ones_like(input_ids)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pool_mask": attention_mask.clone()}
