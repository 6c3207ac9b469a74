"""Split, deduplication and sampling helpers shared by every task builder.

Every builder in this package follows the same three steps, in this order:

1. ``dedup_rows``: drop rows whose text (after whitespace/case normalization) was already seen, and rows whose query
   equals their passage. Dedup runs over the whole source, before splitting, so one text can never land in two
   splits.
2. ``split_of``: assign each row to "train", "dev" or "test" from a stable hash (sha256, not ``hash()``) of its group
   key, 80/10/10. All rows of a group share a split. Every task of one source uses the same group keys (Debian
   source package, Python module), so a group that is in dev/test for one task is in dev/test for all of them.
3. ``take``: keep a deterministic, optionally label-balanced subset of each split to keep tasks small.

Rows are plain dicts. Keys starting with ``_`` (``_group``, ``_label_for_balance``) are bookkeeping: they are used by
the helpers and by tests, and are dropped before the rows become a ``datasets.Dataset``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
# Percent of groups per split; the hash bucket is in [0, 100).
SPLIT_BOUNDS = {"train": (0, 80), "dev": (80, 90), "test": (90, 100)}

Row = dict

# Classification scoring (mteb's eval.tasks.LocalClassificationTask and train.monitor's dev evaluator): the classifier
# is fitted on the first rows of each label of the train split.
CLASSIFIER_ROWS_PER_LABEL = 16


class SourceNotFoundError(FileNotFoundError):
    """Raised when a text source (apt lists, stdlib) is not on this machine; the message says how to get it."""


def first_rows_per_label(rows: Iterable[Row], n: int = CLASSIFIER_ROWS_PER_LABEL, key: str = "label") -> list[Row]:
    """The rows in their order, keeping at most the first ``n`` of each ``row[key]``."""
    seen: dict = defaultdict(int)
    kept = []
    for row in rows:
        seen[row[key]] += 1
        if seen[row[key]] <= n:
            kept.append(row)
    return kept


def stable_hash(text: str) -> int:
    """Returns a 64-bit integer from sha256 of ``text``; identical across processes, machines and Python versions."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def split_of(group: str) -> str:
    """Returns the split ("train", "dev" or "test") of a group key.

    Example:
        >>> split_of("bash") in SPLITS
        True
    """
    bucket = stable_hash(group) % 100
    for split, (low, high) in SPLIT_BOUNDS.items():
        if low <= bucket < high:
            return split
    raise RuntimeError(f"bucket {bucket} outside SPLIT_BOUNDS")  # unreachable: bounds cover [0, 100)


def normalize(text: str) -> str:
    """Returns ``text`` with runs of whitespace collapsed and case folded; the key used for deduplication."""
    return " ".join(text.split()).casefold()


def dedup_rows(rows: Iterable[Row], text_keys: Sequence[str]) -> list[Row]:
    """Drops rows that repeat a text already seen in any of ``text_keys``, and rows whose texts are identical.

    Rows are visited in the given order and the first occurrence wins, so callers sort rows first to make the
    result independent of file order.

    Args:
        rows: Rows to filter.
        text_keys: Columns whose normalized text must be unique across all kept rows (e.g. ``("query", "passage")``).

    Returns:
        The kept rows, in input order.
    """
    seen: set[str] = set()
    kept = []
    dropped = 0
    for row in rows:
        texts = [normalize(row[key]) for key in text_keys]
        if any(not text for text in texts) or len(set(texts)) < len(texts) or any(text in seen for text in texts):
            dropped += 1
            continue
        seen.update(texts)
        kept.append(row)
    logger.debug("dedup on %s kept %d rows, dropped %d", text_keys, len(kept), dropped)
    return kept


def split_rows(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Groups rows into splits by ``split_of(row["_group"])``."""
    splits: dict[str, list[Row]] = {split: [] for split in SPLITS}
    for row in rows:
        splits[split_of(row["_group"])].append(row)
    return splits


def take(
    rows: Sequence[Row],
    limit: int,
    *,
    key: Callable[[Row], str],
    balance: Callable[[Row], str] | None = None,
    per_group: int | None = None,
) -> list[Row]:
    """Returns a deterministic subset of at most ``limit`` rows.

    Rows are ordered by ``stable_hash(key(row))``, so the subset does not depend on input order and adding rows to a
    source changes it only locally. With ``balance``, rows are drawn round-robin across its values (sorted), so no
    value dominates. With ``per_group``, at most that many rows of one ``_group`` are kept.

    Args:
        rows: Candidate rows.
        limit: Maximum number of rows returned.
        key: Stable identifier of a row (e.g. its id).
        balance: Optional function giving the value to balance over (a label, a section).
        per_group: Optional cap on rows per ``_group``.

    Returns:
        The chosen rows, in round-robin order.
    """
    ordered = sorted(rows, key=lambda row: (stable_hash(key(row)), key(row)))
    if per_group is not None:
        counts: dict[str, int] = defaultdict(int)
        capped = []
        for row in ordered:
            if counts[row["_group"]] < per_group:
                counts[row["_group"]] += 1
                capped.append(row)
        ordered = capped
    if balance is None:
        return ordered[:limit]
    buckets: dict[str, list[Row]] = defaultdict(list)
    for row in ordered:
        buckets[balance(row)].append(row)
    queues = [buckets[value] for value in sorted(buckets)]
    chosen: list[Row] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(queue) for queue in queues):
        for queue in queues:
            if depth < len(queue) and len(chosen) < limit:
                chosen.append(queue[depth])
        depth += 1
    return chosen


@dataclass
class SplitSizes:
    """Row caps per split for one task.

    Args:
        train (`int`): Maximum training rows.
        dev (`int`): Maximum dev rows.
        test (`int`): Maximum test rows.
    """

    train: int = 4000
    dev: int = 500
    test: int = 500

    def __getitem__(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid: {SPLITS}")
        return getattr(self, split)
