"""Public Hugging Face Hub datasets (or local copies of them) as contrastive training rows.

Where the Hub is reachable, ``load_hub_pairs("sentence-transformers/natural-questions")`` downloads a dataset with
``datasets.load_dataset`` and maps its columns onto sentence-transformers' order (``anchor``, ``positive``,
``negative_1``..``negative_n``, ``task``), the same columns as ``train.data.training_pairs``. On machines without the
Hub (ours), pass a local copy instead: a folder written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``) or a
folder/file of jsonl, json, parquet or csv. A Hub name without Hub access fails within seconds with a message saying
what to do, instead of datasets' retry loop.

``HUB_DATASETS`` lists a few well-known datasets with their column mappings and NV-Embed-style instructions. The
mappings are copied from the dataset cards as published; they are untested here because this machine is offline.

Example:
    >>> from train.data.hub import load_hub_pairs
    >>> pairs = load_hub_pairs("sentence-transformers/natural-questions", limit=1000)  # doctest: +SKIP
    >>> pairs.column_names  # doctest: +SKIP
    ['anchor', 'positive', 'task']
    >>> local = load_hub_pairs("/data/nq", anchor_column="query", positive_column="answer")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import datasets


logger = logging.getLogger(__name__)

LOCAL_DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
HUB_CONNECT_TIMEOUT_S = 3.0


class HubUnavailableError(ConnectionError):
    """Raised when a dataset name needs the Hub and the Hub cannot be reached; the message says how to go local."""


@dataclass(frozen=True)
class HubDatasetSpec:
    """Column mapping of one published Hub dataset.

    Args:
        anchor_column (`str`): Column that becomes ``anchor`` (the query).
        positive_column (`str`): Column that becomes ``positive``.
        negative_columns (`tuple[str, ...]`, *optional*, defaults to ()): Columns that become ``negative_1``...
        subset (`str`, *optional*): Dataset config name passed to ``load_dataset``.
        task (`str`): Value of the ``task`` column.
        instruction (`str`, *optional*, defaults to ""): Task instruction for the query template (NV-Embed paper,
            table of training instructions, where it lists the dataset).
    """

    anchor_column: str
    positive_column: str
    negative_columns: tuple[str, ...] = ()
    subset: str | None = None
    task: str = ""
    instruction: str = ""


# Mappings as published on the dataset cards; untested offline (no Hub on our machines).
HUB_DATASETS: dict[str, HubDatasetSpec] = {
    "sentence-transformers/natural-questions": HubDatasetSpec(
        anchor_column="query",
        positive_column="answer",
        task="natural_questions",
        instruction="Given a question, retrieve Wikipedia passages that answer the question",
    ),
    "sentence-transformers/msmarco-bm25": HubDatasetSpec(
        anchor_column="query",
        positive_column="positive",
        negative_columns=("negative",),
        subset="triplet",
        task="msmarco",
        instruction="Given a web search query, retrieve relevant passages that answer the query",
    ),
    "sentence-transformers/gooaq": HubDatasetSpec(
        anchor_column="question",
        positive_column="answer",
        task="gooaq",
        instruction="Given a question, retrieve passages that answer the question",
    ),
    "sentence-transformers/squad": HubDatasetSpec(
        anchor_column="question",
        positive_column="answer",
        task="squad",
        instruction="Given a question, retrieve Wikipedia passages that answer the question",
    ),
    "sentence-transformers/all-nli": HubDatasetSpec(
        anchor_column="anchor",
        positive_column="positive",
        negative_columns=("negative",),
        subset="triplet",
        task="all_nli",
        instruction="Given a premise, retrieve a hypothesis that is entailed by the premise",
    ),
}


def _is_save_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _load_local(path: Path, split: str) -> datasets.Dataset:
    if path.is_dir() and _is_save_to_disk(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path} has no split {split!r}; its splits: {sorted(loaded)}")
            return loaded[split]
        return loaded  # a single Dataset: it is the split
    if path.is_file():
        builder = LOCAL_DATA_SUFFIXES.get(path.suffix)
        if builder is None:
            raise ValueError(f"{path}: unsupported file type; use one of {sorted(LOCAL_DATA_SUFFIXES)}")
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    files = [f for f in sorted(path.rglob("*")) if f.suffix in LOCAL_DATA_SUFFIXES]
    if not files:
        raise ValueError(
            f"{path} holds neither a save_to_disk dataset nor data files ({', '.join(sorted(LOCAL_DATA_SUFFIXES))})"
        )
    # datasets infers splits from file names (train.jsonl, test-00000.parquet, ...); other names all go to "train".
    loaded = datasets.load_dataset(str(path))
    if split not in loaded:
        raise ValueError(f"{path} has no split {split!r}; its splits: {sorted(loaded)}")
    return loaded[split]


def _hub_message(name: str, reason: str) -> str:
    return (
        f"Cannot load {name!r} from the Hugging Face Hub ({reason}). Without Hub access, save the dataset on a "
        "machine that has it (`load_dataset(...).save_to_disk(folder)` or `.to_json('train.jsonl')`) and pass that "
        "folder or file path instead of the name."
    )


def _check_hub_reachable(name: str, timeout: float = HUB_CONNECT_TIMEOUT_S) -> None:
    """Fails within ``timeout`` seconds when the Hub cannot be reached (datasets would retry for ~30 s)."""
    if datasets.config.HF_HUB_OFFLINE:
        return  # datasets raises at once in offline mode (or loads its local cache)
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        reason = f"{endpoint.hostname}:{port} unreachable: {error}; set HF_HUB_OFFLINE=1 to use only cached copies"
        raise HubUnavailableError(_hub_message(name, reason)) from error


def _load_hub(name: str, subset: str | None, split: str) -> datasets.Dataset:
    _check_hub_reachable(name)
    try:
        return datasets.load_dataset(name, subset, split=split)
    except (ConnectionError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as error:
        reason = "offline mode, HF_HUB_OFFLINE=1, and no cached copy" if datasets.config.HF_HUB_OFFLINE else str(error)
        raise HubUnavailableError(_hub_message(name, reason)) from error


def load_hub_pairs(
    name_or_path: str | Path,
    *,
    split: str = "train",
    anchor_column: str | None = None,
    positive_column: str | None = None,
    negative_columns: Sequence[str] | None = None,
    task: str | None = None,
    subset: str | None = None,
    limit: int | None = None,
) -> datasets.Dataset:
    """Loads a Hub dataset or a local copy as training rows: ``anchor``, ``positive``, ``negative_1``.., ``task``.

    Column arguments left as ``None`` come from ``HUB_DATASETS`` when ``name_or_path`` is listed there; for any other
    name or path, ``anchor_column`` and ``positive_column`` are required.

    Args:
        name_or_path: A Hub dataset name, a folder written by ``save_to_disk``, or a folder/file of jsonl, json,
            parquet or csv. An existing local path always wins over a Hub name.
        split: Split to load; ignored for a saved single ``Dataset`` or a single file.
        anchor_column: Source column of ``anchor``.
        positive_column: Source column of ``positive``.
        negative_columns: Source columns of ``negative_1``, ``negative_2``, ... in that order.
        task: Value of the ``task`` column; defaults to the registry's name, else the last path component.
        subset: Hub config name (``load_dataset``'s second argument).
        limit: Keep only the first ``limit`` rows.

    Returns:
        A ``datasets.Dataset`` with exactly the columns ``anchor``, ``positive``, ``negative_1``.., ``task``.

    Raises:
        ValueError: A named column is missing (the message lists the dataset's columns), a column is used twice, the
            split is missing, or no column mapping is known.
        HubUnavailableError: ``name_or_path`` is not a local path and the Hub is unreachable or offline.

    Example:
        >>> pairs = load_hub_pairs("/data/nq", anchor_column="query", positive_column="answer")  # doctest: +SKIP
        >>> pairs.column_names  # doctest: +SKIP
        ['anchor', 'positive', 'task']
    """
    name = str(name_or_path)
    spec = HUB_DATASETS.get(name)
    anchor_column = anchor_column or (spec.anchor_column if spec else None)
    positive_column = positive_column or (spec.positive_column if spec else None)
    if negative_columns is None:
        negative_columns = spec.negative_columns if spec else ()
    subset = subset or (spec.subset if spec else None)
    task = task or (spec.task if spec else None) or Path(name.rstrip("/")).name
    if anchor_column is None or positive_column is None:
        raise ValueError(
            f"No column mapping known for {name!r}: pass anchor_column and positive_column "
            f"(registered names: {sorted(HUB_DATASETS)})"
        )
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    source = [anchor_column, positive_column, *negative_columns]
    if len(set(source)) != len(source):
        raise ValueError(f"A column is used twice in the mapping: {source}")

    path = Path(name).expanduser()
    dataset = _load_local(path, split) if path.exists() else _load_hub(name, subset, split)
    missing = [column for column in source if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{name!r} has no column {missing[0]!r} (missing: {missing}); its columns: {dataset.column_names}"
        )
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    targets = ["anchor", "positive", *(f"negative_{i}" for i in range(1, len(negative_columns) + 1))]
    dataset = dataset.select_columns(source)
    # Rename through temporary names so mappings that swap names (anchor <-> positive) stay correct.
    dataset = dataset.rename_columns({column: f"__nvembed_{i}" for i, column in enumerate(source)})
    dataset = dataset.rename_columns({f"__nvembed_{i}": target for i, target in enumerate(targets)})
    logger.info("loaded %d rows of %s as task %r", len(dataset), name, task)
    return dataset.add_column("task", [task] * len(dataset))


__all__ = ["HUB_DATASETS", "HubDatasetSpec", "HubUnavailableError", "load_hub_pairs"]
