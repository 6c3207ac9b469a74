"""BEIR/mteb-format retrieval sets (corpus, queries, qrels) as contrastive training rows.

A BEIR set publishes three tables instead of (query, passage) rows; the qrels join them:

=========== ===================================== ==================================================
table       Hub (mteb's layout)                   local folder (BEIR's download, or a copy of mteb's)
=========== ===================================== ==================================================
corpus      subset ``corpus``: _id, title, text   ``corpus.jsonl``
queries     subset ``queries``: _id, text         ``queries.jsonl``
qrels       subset ``default``, one split each:   ``qrels/<split>.tsv`` (BEIR: tab-separated with a header)
            query-id, corpus-id, score            or ``qrels/<split>.jsonl``
=========== ===================================== ==================================================

Each qrel scored >= ``min_score`` becomes a row: ``anchor`` is the query's text, ``positive`` the document's title and
text joined by a space (as BEIR and mteb embed a document). ``negative_1``..``negative_N`` are documents drawn from the
same corpus, never one judged for that query (whatever its score): easy negatives that need no model. With
``num_negatives=0`` the rows have no negative column and the training pipeline mines hard negatives among the
positives, as for any retrieval dataset without published negatives.

``train.data.hub.HUB_DATASETS`` registers the public ones with ``layout="beir"`` (FiQA, NFCorpus, SciFact), so a run
config lists them like any Hub dataset; ``load_hub_pairs`` hands them to ``load_beir_pairs``.

Example:
    >>> from train.data.beir import load_beir_pairs
    >>> pairs = load_beir_pairs("mteb/fiqa", split="train")  # doctest: +SKIP
    >>> pairs.column_names  # doctest: +SKIP
    ['anchor', 'positive', 'negative_1', 'task']
    >>> local = load_beir_pairs("/data/beir/scifact", split="train", num_negatives=0)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import datasets

from .local_or_hub import _load_hub, looks_like_path


logger = logging.getLogger(__name__)

QRELS_SUFFIXES = (".tsv", ".jsonl")
POSITIVE_MIN_SCORE = 1  # BEIR's convention: score 0 marks a judged non-relevant document


@dataclass
class BeirTables:
    """The three tables of a BEIR set, keyed by id.

    Args:
        corpus (`dict[str, str]`): Document id -> the document's title and text joined by a space.
        queries (`dict[str, str]`): Query id -> query text.
        qrels (`list[tuple[str, str, float]]`): (query id, document id, score) of the split, in file order.
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: list[tuple[str, str, float]]


def _document(row: dict) -> str:
    return " ".join(part for part in (row.get("title") or "", row.get("text") or "") if part.strip())


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _local_tables(folder: Path, split: str) -> BeirTables:
    missing = [name for name in ("corpus.jsonl", "queries.jsonl") if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} is not a BEIR folder: no {', '.join(missing)} (needs corpus.jsonl, queries.jsonl)")
    qrels_files = [folder / "qrels" / f"{split}{suffix}" for suffix in QRELS_SUFFIXES]
    qrels_file = next((path for path in qrels_files if path.is_file()), None)
    if qrels_file is None:
        found = sorted(p.name for p in (folder / "qrels").glob("*")) if (folder / "qrels").is_dir() else []
        raise ValueError(f"{folder} has no qrels for split {split!r} (qrels/{split}.tsv or .jsonl); qrels: {found}")
    if qrels_file.suffix == ".tsv":
        with open(qrels_file, encoding="utf-8", newline="") as f:
            qrel_rows = list(csv.DictReader(f, delimiter="\t"))
    else:
        qrel_rows = _read_jsonl(qrels_file)
    return BeirTables(
        corpus={str(row["_id"]): _document(row) for row in _read_jsonl(folder / "corpus.jsonl")},
        queries={str(row["_id"]): row["text"] for row in _read_jsonl(folder / "queries.jsonl")},
        qrels=_qrel_tuples(qrel_rows, qrels_file),
    )


def _qrel_tuples(rows, where) -> list[tuple[str, str, float]]:
    try:
        return [(str(row["query-id"]), str(row["corpus-id"]), float(row["score"])) for row in rows]
    except KeyError as error:
        raise ValueError(f"{where}: qrels need the columns query-id, corpus-id, score; missing {error}") from error


def _hub_tables(name: str, split: str) -> BeirTables:
    corpus = _load_hub(name, "corpus", "corpus")
    queries = _load_hub(name, "queries", "queries")
    qrels = _load_hub(name, "default", split)
    return BeirTables(
        corpus={str(row["_id"]): _document(row) for row in corpus},
        queries={str(row["_id"]): row["text"] for row in queries},
        qrels=_qrel_tuples(qrels, f"{name} (default, {split})"),
    )


def load_beir_tables(name_or_path: str | Path, split: str = "train") -> BeirTables:
    """The corpus, queries and ``split``'s qrels of a local BEIR folder or a Hub dataset in mteb's layout.

    Raises:
        ValueError: A local folder lacks a table or the split's qrels (the message lists what it has).
        FileNotFoundError: ``name_or_path`` looks like a path but does not exist.
        train.data.hub.HubUnavailableError: A Hub name, and the Hub is unreachable or offline without a cache.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return _local_tables(path, split)
    if path.exists() or looks_like_path(name):
        raise FileNotFoundError(f"No BEIR folder at {name!r} (a path, not a Hub name)")
    return _hub_tables(name, split)


def beir_pairs(
    tables: BeirTables,
    rng: random.Random,
    num_negatives: int = 1,
    min_score: float = POSITIVE_MIN_SCORE,
    limit: int | None = None,
) -> dict[str, list[str]]:
    """The ``anchor``, ``positive`` (, ``negative_1``..) columns of the qrels scored >= ``min_score``.

    Qrels naming a query or document missing from its table are skipped with a warning that counts them.

    Raises:
        ValueError: ``num_negatives`` < 0, no qrel of the split makes a row, or the corpus holds too few unjudged
            documents for a query's negatives.
    """
    if num_negatives < 0:
        raise ValueError(f"num_negatives must be >= 0, got {num_negatives}")
    qrels = tables.qrels if limit is None else tables.qrels[:limit]
    judged: dict[str, set[str]] = {}
    for query_id, doc_id, _ in tables.qrels:
        judged.setdefault(query_id, set()).add(doc_id)
    doc_ids = sorted(tables.corpus)
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    columns.update({f"negative_{i}": [] for i in range(1, num_negatives + 1)})
    dangling = []
    for query_id, doc_id, score in qrels:
        if score < min_score:
            continue
        if query_id not in tables.queries or doc_id not in tables.corpus:
            dangling.append((query_id, doc_id))
            continue
        columns["anchor"].append(tables.queries[query_id])
        columns["positive"].append(tables.corpus[doc_id])
        for i, negative in enumerate(_corpus_negatives(doc_ids, judged[query_id], num_negatives, rng), 1):
            columns[f"negative_{i}"].append(tables.corpus[negative])
    if dangling:
        logger.warning(
            "skipped %d qrels naming a query or document not in the tables, e.g. %s", len(dangling), dangling[:3]
        )
    if not columns["anchor"]:
        raise ValueError(f"no qrel scored >= {min_score} names a known query and document ({len(qrels)} qrels read)")
    return columns


def _corpus_negatives(doc_ids: list[str], judged: set[str], count: int, rng: random.Random) -> list[str]:
    if count == 0:
        return []
    if len(doc_ids) - len(judged) < count:
        raise ValueError(f"the corpus has {len(doc_ids) - len(judged)} unjudged documents for a query, need {count}")
    chosen: list[str] = []
    while len(chosen) < count:  # rejection sampling: judged documents are a tiny share of a real corpus
        candidate = doc_ids[rng.randrange(len(doc_ids))]
        if candidate not in judged and candidate not in chosen:
            chosen.append(candidate)
    return chosen


def load_beir_pairs(
    name_or_path: str | Path,
    *,
    split: str = "train",
    task: str | None = None,
    limit: int | None = None,
    seed: int = 42,
    num_negatives: int = 1,
    min_score: float = POSITIVE_MIN_SCORE,
) -> datasets.Dataset:
    """A BEIR set as training rows: ``anchor``, ``positive``, ``negative_1``.. (from the same corpus), ``task``.

    Args:
        name_or_path: A local BEIR folder or a Hub dataset in mteb's layout (e.g. "mteb/fiqa").
        split: The qrels split (BEIR: train, dev, test; train on ``train``).
        task: Value of the ``task`` column; defaults to the last path component.
        limit: Read only the first ``limit`` qrels of the split.
        seed: Seed of the negative draws; the same seed gives the same rows.
        num_negatives: Corpus negatives per row (0: no negative column).
        min_score: Lowest qrel score that counts as relevant.

    Returns:
        A ``datasets.Dataset`` with one row per relevant (query, document) pair.

    Example:
        >>> pairs = load_beir_pairs("/data/beir/nfcorpus", split="train", num_negatives=2)  # doctest: +SKIP
        >>> pairs.column_names  # doctest: +SKIP
        ['anchor', 'positive', 'negative_1', 'negative_2', 'task']
    """
    name = str(name_or_path)
    task = task or Path(name.rstrip("/")).name
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    tables = load_beir_tables(name, split)
    rng = random.Random(f"{seed}:{task}:{split}")
    pairs = datasets.Dataset.from_dict(beir_pairs(tables, rng, num_negatives, min_score, limit))
    logger.info(
        "joined %s (%d documents, %d queries, %d %s qrels) into %d rows of task %r",
        name,
        len(tables.corpus),
        len(tables.queries),
        len(tables.qrels),
        split,
        len(pairs),
        task,
    )
    return pairs.add_column("task", [task] * len(pairs))


__all__ = ["BeirTables", "beir_pairs", "load_beir_pairs", "load_beir_tables"]
