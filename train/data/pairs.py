"""Contrastive training rows from a task's source rows: ``training_pairs(name)`` in sentence-transformers' column order
(``anchor``, ``positive``, ``negative_1`` ..., ``task``); ``pairs_from_source`` does the same for rows of any origin
in the source schema of their kind (the Hub loaders of ``hub.py`` use it)."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import datasets

from .core import SPLITS
from .tasks import get_task, load_source


STS_POSITIVE_MIN_SCORE = 4.0  # NV-Embed: STS pairs scored >= 4 are positives
STS_NEGATIVE_MAX_SCORE = 1.0


def _example_pairs(dataset: datasets.Dataset, rng: random.Random, num_negatives: int = 1) -> dict[str, list[str]]:
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(dataset["label"]):
        by_label[label].append(index)
    texts = dataset["text"]
    labels = sorted(by_label)
    negative_columns = [f"negative_{i}" for i in range(1, num_negatives + 1)]
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], **{c: [] for c in negative_columns}}
    if len(labels) < 2:
        return columns
    if num_negatives > len(labels) - 1:
        raise ValueError(
            f"{num_negatives} negatives of other labels per row need {num_negatives + 1} labels; the data has "
            f"{len(labels)}"
        )
    for index, label in enumerate(dataset["label"]):
        same = by_label[label]
        if len(same) < 2:
            continue
        positive = rng.choice(same[:-1])
        positive = same[-1] if positive == index else positive  # never the anchor itself
        others = [other for other in labels if other != label]
        # One negative keeps the draws (and so the rows) of the runs before `num_negatives` existed.
        other_labels = [rng.choice(others)] if num_negatives == 1 else rng.sample(others, num_negatives)
        columns["anchor"].append(texts[index])
        columns["positive"].append(texts[positive])
        for column, other_label in zip(negative_columns, other_labels):
            columns[column].append(texts[rng.choice(by_label[other_label])])
    return columns


def _sts_pairs(dataset: datasets.Dataset, rng: random.Random) -> dict[str, list[str]]:
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for first, second, score in zip(dataset["sentence1"], dataset["sentence2"], dataset["score"]):
        scores[first][second] = scores[second][first] = score
    sentences = sorted(scores)
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], "negative_1": []}
    for first, second, score in zip(dataset["sentence1"], dataset["sentence2"], dataset["score"]):
        if score < STS_POSITIVE_MIN_SCORE:
            continue
        low = sorted(other for other, value in scores[first].items() if value <= STS_NEGATIVE_MAX_SCORE)
        if low:
            negative = rng.choice(low)
        else:  # no scored low partner: a random sentence that is not scored as similar to the anchor
            candidates = (rng.choice(sentences) for _ in range(20))
            negative = next((c for c in candidates if c not in (first, second) and c not in scores[first]), None)
            if negative is None:
                continue
        columns["anchor"].append(first)
        columns["positive"].append(second)
        columns["negative_1"].append(negative)
    return columns


def training_pairs(
    name: str, split: str = "train", cache_dir: str | Path | None = None, seed: int = 42, num_negatives: int = 1
):
    """Returns a task as contrastive training rows in sentence-transformers' column order.

    =============================== ===================== ===================== ==========================
    kind                            anchor                positive              negative_1
    =============================== ===================== ===================== ==========================
    retrieval                       query                 passage               (no column)
    classification, clustering      an example            same label, not self  an example of another label
    sts                             sentence1             sentence2 (score>=4)  a partner scored <= 1
    =============================== ===================== ===================== ==========================

    A ``task`` column holds ``name`` so mixed batches can be traced (and filtered) back to their task.

    Args:
        name: Task name.
        split: "train" (default), "dev" or "test".
        cache_dir: Cache folder for ``load_source``.
        seed: Seed of the positive/negative draws; the same seed gives the same rows.
        num_negatives: classification and clustering: negatives per row (``negative_1`` .. ``negative_n``), each
            an example of a different other label. Retrieval and STS rows ignore it.

    Returns:
        A ``datasets.Dataset``.

    Raises:
        ValueError: Unknown task or split.

    Example:
        >>> pairs = training_pairs("debian_section")  # doctest: +SKIP
        >>> pairs.column_names  # doctest: +SKIP
        ['anchor', 'positive', 'negative_1', 'task']
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits: {SPLITS}")
    spec = get_task(name)
    dataset = load_source(name, cache_dir)[split]
    columns = pairs_from_source(dataset, spec.kind, random.Random(f"{seed}:{name}:{split}"), num_negatives)
    columns["task"] = [name] * len(columns["anchor"])
    return datasets.Dataset.from_dict(columns)


def pairs_from_source(
    dataset: datasets.Dataset, kind: str, rng: random.Random, num_negatives: int = 1
) -> dict[str, list[str]]:
    """The ``anchor``, ``positive`` (, ``negative_1``) columns of ``training_pairs`` from rows in the source schema
    of ``kind`` (``KIND_FEATURES``); the Hub loaders (``train.data.hub``) use it too."""
    if kind == "retrieval":
        return {"anchor": dataset["query"], "positive": dataset["passage"]}
    if kind == "sts":
        return _sts_pairs(dataset, rng)
    return _example_pairs(dataset, rng, num_negatives)
