"""The built-in tasks: their specs (kind and instruction from ``train/instructions.json``), builders, split checks and
on-disk cache. ``load_source(name)`` gives a task's splits in the source schema of its kind (``KIND_FEATURES``); see
the package docstring (``train/data/__init__.py``) for the columns and ``pairs.py`` for the training rows."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets

from .broad import build_broad_neighbours, build_broad_paraphrase, build_broad_qa, build_broad_title_section
from .core import SPLITS, normalize
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
    "broad_neighbours": (build_broad_neighbours, "2"),  # 2: without the WEB's glossary (a dictionary: reserved)
    "broad_paraphrase": (build_broad_paraphrase, "1"),
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
