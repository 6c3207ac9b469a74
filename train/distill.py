"""Teacher vectors for in-batch similarity distillation (`distill_weight` in the run config).

The bundled all-MiniLM-L6-v2 embeds every text of a training dataset once, before training; each row's vectors
(anchor, positive, negatives, L2-normalized, concatenated) become its `label` column, which sentence-transformers hands
to the loss as `labels` (`train.losses.similarity_distillation`). The teacher then costs nothing per step, and the
result is cached on disk beside the mined negatives.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from datasets import Dataset, load_from_disk

from train.cache import save_atomically


logger = logging.getLogger(__name__)


def text_columns(data: Dataset) -> list[str]:
    return [c for c in data.column_names if c == "anchor" or c == "positive" or c.startswith("negative_")]


def add_teacher_vectors(data: Dataset, teacher, cache: Path) -> Dataset:
    """`data` with a `label` column: each row's teacher vectors of its text columns, in column order, concatenated."""
    if (cache / "dataset_info.json").is_file():
        return load_from_disk(str(cache))
    if "label" in data.column_names:
        raise ValueError("Dataset already has a 'label' column; distillation needs it for the teacher vectors.")
    columns = text_columns(data)
    texts = sorted({t for c in columns for t in data[c]})
    logger.info("teacher vectors for %d texts (%d rows x %d columns)", len(texts), len(data), len(columns))
    vectors = teacher.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    index = {t: i for i, t in enumerate(texts)}
    rows = np.concatenate([vectors[[index[t] for t in data[c]]] for c in columns], axis=1)  # (N, k * d)
    result = data.add_column("label", [row.astype(np.float32).tolist() for row in rows])
    save_atomically(result, cache)
    return load_from_disk(str(cache))
