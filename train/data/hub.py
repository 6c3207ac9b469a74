"""Public Hugging Face Hub datasets (or local copies of them) as contrastive training rows.

A run config names them under ``datasets:`` (``train.config.DatasetConfig``), and its stages list them in ``tasks:``
beside the built-in tasks. Where the Hub is reachable, ``load_hub_pairs("sentence-transformers/natural-questions")``
downloads a dataset with ``datasets.load_dataset`` and turns it into the rows of ``train.data.training_pairs``.
On machines without the Hub (ours), pass a local copy instead: a folder written by ``save_to_disk`` (a ``Dataset``
or a ``DatasetDict``) or a folder/file of jsonl, json, parquet or csv; ``hub_name`` gives a local copy its published
dataset's mapping. A Hub name without Hub access fails within seconds with a message saying what to do, instead of
datasets' retry loop.

``columns`` maps the columns of the dataset's kind onto the dataset's own columns:

============== =========================================== ==================================================
kind           ``columns`` keys                            training rows
============== =========================================== ==================================================
retrieval      ``anchor``, ``positive``, ``negative_1``..  the mapped columns (published negatives are kept)
classification ``text``, ``label``                         positive: same label; ``negative_1``: another label
clustering     ``text``, ``label``                         positive: same label; ``negative_1``: another label
sts            ``sentence1``, ``sentence2``, ``score``     pairs scored >= 4 of 5; ``negative_1``: a partner
                                                           scored <= 1, else an unscored sentence
============== =========================================== ==================================================

Non-retrieval datasets thus get their ``negative_1`` as the built-in tasks do (``train.data.pairs_from_source``, the
paper's example-based negatives), which HardNegativesOnlyRankingLoss needs. Labels are compared as strings; a
column of lists (mteb's clustering format: one row of ``sentences`` with its ``labels``) is flattened first.
STS scores are rescaled from ``[0, max_score]`` to the built-in tasks' [0, 5].

``HUB_DATASETS`` lists the NV-Embed paper's public training datasets that are published in these formats, with their
kinds, column mappings (as on the dataset cards) and the paper's instructions. This machine has no Hub access, so the
mappings are unverified against the Hub itself; tests/test_train_datasets.py trains on local fixtures written in the
card formats of natural-questions, msmarco-bm25, banking77 and stsbenchmark-sts.

Example:
    >>> from train.data.hub import hub_spec, load_hub_pairs
    >>> pairs = load_hub_pairs("sentence-transformers/natural-questions", limit=1000)  # doctest: +SKIP
    >>> pairs.column_names  # doctest: +SKIP
    ['anchor', 'positive', 'task']
    >>> nq = hub_spec("/data/nq", hub_name="sentence-transformers/natural-questions")
    >>> local = load_hub_pairs("/data/nq", spec=nq)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import datasets

from . import KIND_FEATURES, pairs_from_source


logger = logging.getLogger(__name__)

LOCAL_DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
HUB_CONNECT_TIMEOUT_S = 3.0
# The training columns of each kind: required, then optional (retrieval: any number of negative_N).
KIND_COLUMNS = {
    "retrieval": ("anchor", "positive"),
    "classification": ("text", "label"),
    "clustering": ("text", "label"),
    "sts": ("sentence1", "sentence2", "score"),
}
STS_MAX_SCORE = 5.0  # the built-in STS tasks' scale, which STS_POSITIVE_MIN_SCORE refers to


class HubUnavailableError(ConnectionError):
    """Raised when a dataset name needs the Hub and the Hub cannot be reached; the message says how to go local."""


@dataclass(frozen=True)
class HubDatasetSpec:
    """How one published dataset becomes training rows.

    Args:
        kind (`str`): "retrieval", "classification", "clustering" or "sts".
        columns (`dict[str, str]`): The dataset's column for each column of the kind (see the module docstring).
        instruction (`str`, *optional*, defaults to ""): Task instruction for the query template (the NV-Embed
            paper's instruction for the dataset, or its MTEB task's).
        subset (`str`, *optional*): Dataset config name passed to ``load_dataset``.
        max_score (`float`, *optional*, defaults to 5.0): Top of an STS dataset's score scale.
    """

    kind: str
    columns: dict[str, str] = field(default_factory=dict)
    instruction: str = ""
    subset: str | None = None
    max_score: float = STS_MAX_SCORE

    def __post_init__(self):
        if self.kind not in KIND_COLUMNS:
            raise ValueError(f"kind must be one of {sorted(KIND_COLUMNS)}, got {self.kind!r}")
        required = KIND_COLUMNS[self.kind]
        missing = [column for column in required if column not in self.columns]
        extra = [column for column in self.columns if column not in required and not _is_negative(column, self.kind)]
        if missing or extra:
            raise ValueError(
                f"columns of a {self.kind} dataset need the keys {list(required)}"
                + (" (and optionally negative_1, negative_2, ...)" if self.kind == "retrieval" else "")
                + f"; got {sorted(self.columns)}"
            )
        sources = list(self.columns.values())
        if len(set(sources)) != len(sources):
            raise ValueError(f"A column is used twice in the mapping: {dict(self.columns)}")
        if not self.max_score > 0:
            raise ValueError(f"max_score must be > 0, got {self.max_score}")

    @property
    def target_columns(self) -> list[str]:
        """The training columns in sentence-transformers' order (retrieval: anchor, positive, negative_1, ...)."""
        negatives = sorted((c for c in self.columns if _is_negative(c, self.kind)), key=lambda c: int(c[9:]))
        if [int(c[9:]) for c in negatives] != list(range(1, len(negatives) + 1)):
            raise ValueError(f"negative columns must be negative_1..negative_N without gaps, got {negatives}")
        return [*KIND_COLUMNS[self.kind], *negatives]


def _is_negative(column: str, kind: str) -> bool:
    return kind == "retrieval" and column.startswith("negative_") and column[9:].isdigit()


def _classification(text: str, label: str = "label_text", subset: str | None = None, instruction: str = ""):
    return HubDatasetSpec("classification", {"text": text, "label": label}, instruction, subset)


# The NV-Embed paper's public training data (section 5) where it is published in a format these mappings read; the
# BEIR-format ones (ArguAna, FiQA, SciFact, NFCorpus, ...: corpus + queries + qrels) need a join and are not listed.
HUB_DATASETS: dict[str, HubDatasetSpec] = {
    "sentence-transformers/msmarco-bm25": HubDatasetSpec(
        "retrieval",
        {"anchor": "query", "positive": "positive", "negative_1": "negative"},
        "Given a web search query, retrieve relevant passages that answer the query",
        subset="triplet",
    ),
    "sentence-transformers/hotpotqa": HubDatasetSpec(
        "retrieval",
        {"anchor": "anchor", "positive": "positive", "negative_1": "negative"},
        "Given a multi-hop question, retrieve documents that can help answer the question",
        subset="triplet",
    ),
    "sentence-transformers/natural-questions": HubDatasetSpec(
        "retrieval",
        {"anchor": "query", "positive": "answer"},
        "Given a question, retrieve Wikipedia passages that answer the question",
    ),
    "sentence-transformers/paq": HubDatasetSpec(
        "retrieval",
        {"anchor": "query", "positive": "answer"},
        "Given a question, retrieve Wikipedia passages that answer the question",
    ),
    "sentence-transformers/stackexchange-duplicates": HubDatasetSpec(
        "retrieval",
        {"anchor": "title1", "positive": "title2"},
        "Given a question, retrieve questions that are semantically equivalent to the given question",
        subset="title-title-pair",
    ),
    "sentence-transformers/all-nli": HubDatasetSpec(
        "retrieval",
        {"anchor": "anchor", "positive": "positive", "negative_1": "negative"},
        "Given a premise, retrieve a hypothesis that is entailed by the premise",
        subset="triplet",
    ),
    "sentence-transformers/squad": HubDatasetSpec(
        "retrieval",
        {"anchor": "question", "positive": "answer"},
        "Given a question, retrieve Wikipedia passages that answer the question",
    ),
    "sentence-transformers/fever": HubDatasetSpec(
        "retrieval",
        {"anchor": "anchor", "positive": "positive", "negative_1": "negative"},
        "Given a claim, retrieve documents that support or refute the claim",
        subset="triplet",
    ),
    "sentence-transformers/gooaq": HubDatasetSpec(
        "retrieval",
        {"anchor": "question", "positive": "answer"},
        "Given a question, retrieve passages that answer the question",
    ),
    "mteb/amazon_counterfactual": _classification(
        "text",
        subset="en",
        instruction="Classify a given Amazon customer review text as either counterfactual or not-counterfactual",
    ),
    "mteb/amazon_reviews_multi": _classification(
        "text", subset="en", instruction="Classify the given Amazon review into its appropriate rating category"
    ),
    "mteb/banking77": _classification(
        "text", instruction="Given a online banking query, find the corresponding intents"
    ),
    "mteb/emotion": _classification(
        "text",
        instruction="Classify the emotion expressed in the given Twitter message into one of the six emotions: anger, "
        "fear, joy, love, sadness, and surprise",
    ),
    "mteb/imdb": _classification(
        "text",
        "label",
        instruction="Classify the sentiment expressed in the given movie review text from the IMDB dataset",
    ),
    "mteb/mtop_intent": _classification(
        "text", subset="en", instruction="Classify the intent of the given utterance in task-oriented conversation"
    ),
    "mteb/toxic_conversations_50k": _classification(
        "text", instruction="Classify the given comments as either toxic or not toxic"
    ),
    "mteb/tweet_sentiment_extraction": _classification(
        "text", instruction="Classify the sentiment of a given tweet as either positive, negative, or neutral"
    ),
    "mteb/raw_arxiv": HubDatasetSpec(
        "clustering",
        {"text": "title", "label": "categories"},
        "Identify the main and secondary category of Arxiv papers based on the titles",
    ),
    "mteb/raw_biorxiv": HubDatasetSpec(
        "clustering",
        {"text": "title", "label": "category"},
        "Identify the main category of Biorxiv papers based on the titles",
    ),
    "mteb/raw_medrxiv": HubDatasetSpec(
        "clustering",
        {"text": "title", "label": "category"},
        "Identify the main category of Medrxiv papers based on the titles",
    ),
    "mteb/sts12-sts": HubDatasetSpec(
        "sts",
        {"sentence1": "sentence1", "sentence2": "sentence2", "score": "score"},
        "Retrieve semantically similar text",
    ),
    "mteb/stsbenchmark-sts": HubDatasetSpec(
        "sts",
        {"sentence1": "sentence1", "sentence2": "sentence2", "score": "score"},
        "Retrieve semantically similar text",
    ),
}


def hub_spec(
    name_or_path: str | Path,
    *,
    hub_name: str | None = None,
    kind: str | None = None,
    columns: Mapping[str, str] | None = None,
    instruction: str | None = None,
    subset: str | None = None,
    max_score: float | None = None,
) -> HubDatasetSpec:
    """The mapping of a dataset: the ``HUB_DATASETS`` entry of ``hub_name`` (else of ``name_or_path``), with the
    given arguments replacing its fields; for a dataset not listed there, ``kind`` and ``columns`` are required.

    Raises:
        ValueError: No mapping is known, or the arguments make an invalid one (the message says which).
    """
    registered = HUB_DATASETS.get(hub_name or str(name_or_path))
    if hub_name is not None and registered is None:
        raise ValueError(f"hub_name {hub_name!r} is not in HUB_DATASETS; known names: {sorted(HUB_DATASETS)}")
    if registered is None and (kind is None or columns is None):
        raise ValueError(
            f"No column mapping known for {str(name_or_path)!r}: give kind and columns, or hub_name if it is a copy "
            f"of a registered dataset (registered names: {sorted(HUB_DATASETS)})"
        )
    kind = kind or registered.kind
    if registered is not None and kind != registered.kind and columns is None:
        raise ValueError(f"kind {kind!r} differs from the registered {registered.kind!r}: give its columns too")
    return HubDatasetSpec(
        kind=kind,
        columns=dict(columns if columns is not None else registered.columns),
        instruction=instruction if instruction is not None else (registered.instruction if registered else ""),
        subset=subset or (registered.subset if registered else None),
        max_score=max_score or (registered.max_score if registered else STS_MAX_SCORE),
    )


def looks_like_path(name: str) -> bool:
    """A name that cannot be a Hub id ("owner/name" or "name"): absolute, relative, home, or a data file name."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or Path(name).suffix in LOCAL_DATA_SUFFIXES


def check_available(name_or_path: str | Path, subset: str | None = None) -> None:
    """Fails within seconds when a dataset can be loaded neither from a local path nor from the Hub (or its cache).

    Raises:
        FileNotFoundError: ``name_or_path`` looks like a path but does not exist.
        HubUnavailableError: A Hub name, and the Hub is unreachable, or offline with no cached copy.
    """
    name = str(name_or_path)
    if Path(name).expanduser().exists():
        return
    if looks_like_path(name):
        raise FileNotFoundError(f"No dataset at {name!r} (a path, not a Hub name)")
    _check_hub_reachable(name)
    if datasets.config.HF_HUB_OFFLINE:
        try:
            datasets.load_dataset_builder(name, subset)  # offline: answers from the local cache at once
        except (ConnectionError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as error:
            raise HubUnavailableError(
                _hub_message(name, "offline mode, HF_HUB_OFFLINE=1, and no cached copy")
            ) from error


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


def _source_rows(dataset: datasets.Dataset, spec: HubDatasetSpec) -> datasets.Dataset:
    """A classification/clustering/sts dataset in the built-in tasks' source schema (``KIND_FEATURES``)."""
    columns = {target: dataset[source] for target, source in spec.columns.items()}
    first = next(iter(columns.values()))
    if first and isinstance(first[0], list):  # mteb clustering: each row holds a list of texts and their labels
        columns = {target: [item for row in values for item in row] for target, values in columns.items()}
    if spec.kind == "sts":
        columns["score"] = [float(score) * STS_MAX_SCORE / spec.max_score for score in columns["score"]]
    else:
        columns["label"] = [str(label) for label in columns["label"]]
    features = KIND_FEATURES[spec.kind]
    return datasets.Dataset.from_dict({c: columns[c] for c in features}, features=features)


def load_hub_pairs(
    name_or_path: str | Path,
    *,
    spec: HubDatasetSpec | None = None,
    split: str = "train",
    task: str | None = None,
    limit: int | None = None,
    seed: int = 42,
    num_negatives: int = 1,
) -> datasets.Dataset:
    """Loads a Hub dataset or a local copy as training rows: ``anchor``, ``positive``, ``negative_1``.., ``task``.

    Args:
        name_or_path: A Hub dataset name, a folder written by ``save_to_disk``, or a folder/file of jsonl, json,
            parquet or csv. An existing local path always wins over a Hub name.
        spec: Kind and column mapping; defaults to ``hub_spec(name_or_path)`` (the ``HUB_DATASETS`` entry).
        split: Split to load; ignored for a saved single ``Dataset`` or a single file.
        task: Value of the ``task`` column; defaults to the last path component.
        limit: Keep only the first ``limit`` rows of the dataset (before pairing).
        seed: Seed of the positive/negative draws of non-retrieval kinds.
        num_negatives: classification and clustering: negatives per row, each of a different other label.

    Returns:
        A ``datasets.Dataset``: retrieval: ``anchor``, ``positive``, the mapped ``negative_N``, ``task``; other kinds:
        ``anchor``, ``positive``, ``negative_1``, ``task`` (see the module docstring).

    Raises:
        ValueError: A mapped column is missing (the message lists the dataset's columns), the split is missing, or no
            column mapping is known.
        FileNotFoundError: ``name_or_path`` looks like a path but does not exist.
        HubUnavailableError: ``name_or_path`` is a Hub name and the Hub is unreachable or offline.

    Example:
        >>> spec = hub_spec("/data/nq", kind="retrieval", columns={"anchor": "query", "positive": "answer"})
        >>> pairs = load_hub_pairs("/data/nq", spec=spec)  # doctest: +SKIP
        >>> pairs.column_names  # doctest: +SKIP
        ['anchor', 'positive', 'task']
    """
    name = str(name_or_path)
    spec = spec or hub_spec(name)
    task = task or Path(name.rstrip("/")).name
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    targets = spec.target_columns
    source = [spec.columns[target] for target in targets]
    path = Path(name).expanduser()
    if path.exists():
        dataset = _load_local(path, split)
    elif looks_like_path(name):
        raise FileNotFoundError(f"No dataset at {name!r} (a path, not a Hub name)")
    else:
        dataset = _load_hub(name, spec.subset, split)
    missing = [column for column in source if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{name!r} has no column {missing[0]!r} (missing: {missing}); its columns: {dataset.column_names}"
        )
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if spec.kind != "retrieval":
        rng = random.Random(f"{seed}:{task}:{split}")
        pairs = datasets.Dataset.from_dict(
            pairs_from_source(_source_rows(dataset, spec), spec.kind, rng, num_negatives)
        )
        logger.info("loaded %d rows of %s as %d %s pairs of task %r", len(dataset), name, len(pairs), spec.kind, task)
        return pairs.add_column("task", [task] * len(pairs))
    dataset = dataset.select_columns(source)
    # Rename through temporary names so mappings that swap names (anchor <-> positive) stay correct.
    dataset = dataset.rename_columns({column: f"__nvembed_{i}" for i, column in enumerate(source)})
    dataset = dataset.rename_columns({f"__nvembed_{i}": target for i, target in enumerate(targets)})
    logger.info("loaded %d rows of %s as task %r", len(dataset), name, task)
    return dataset.add_column("task", [task] * len(dataset))


__all__ = ["HUB_DATASETS", "HubDatasetSpec", "HubUnavailableError", "check_available", "hub_spec", "load_hub_pairs"]
