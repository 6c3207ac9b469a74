"""Datasets cached on disk between runs (mined negatives, teacher vectors), written so a kill leaves no half cache.

Below `train.pipeline` and `train.distill`, which both write such caches.
"""

import shutil
from pathlib import Path

from datasets import Dataset


def save_atomically(data: Dataset, cache: Path) -> None:
    """save_to_disk into a temporary folder, then rename: a kill mid-write never leaves a cache that looks finished."""
    staging = cache.with_name(cache.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    data.save_to_disk(str(staging))
    shutil.rmtree(cache, ignore_errors=True)
    staging.rename(cache)
