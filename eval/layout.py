"""The folder the evaluation tasks read: where it is and how a split is written (the layout `eval/tasks.py` documents).

Below `eval.export` (the in-domain tasks), `eval.ood` (the out-of-domain tasks) and `eval.tasks` (which reads it), so
that none of them imports another for these helpers.

Example:
    >>> files = retrieval_files([{"id": 7, "query": "q", "passage": "p"}])
    >>> files["qrels"]
    [{'query-id': 'q7', 'corpus-id': 'd7', 'score': 1}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


EVAL_DIR_ENV = "NVEMBED_EVAL_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_eval_dir() -> Path:
    """Returns `$NVEMBED_EVAL_DIR` if set, else `<repo>/data_cache/eval`."""
    return Path(os.environ.get(EVAL_DIR_ENV) or REPO_ROOT / "data_cache" / "eval")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Writes one JSON object per line (creating the folder); returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def retrieval_files(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """`query`/`passage`/`id` rows -> corpus, queries and qrels (query `q<id>` -> its own passage `d<id>`)."""
    ids = [str(row["id"]) for row in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"retrieval ids must be unique within a split; {len(ids) - len(set(ids))} repeat")
    return {
        "corpus": [{"id": f"d{i}", "text": row["passage"]} for i, row in zip(ids, rows)],
        "queries": [{"id": f"q{i}", "text": row["query"]} for i, row in zip(ids, rows)],
        "qrels": [{"query-id": f"q{i}", "corpus-id": f"d{i}", "score": 1} for i in ids],
    }


def write_split(task_dir: Path, split: str, kind: str, rows: Sequence[dict[str, Any]]) -> None:
    """One split of one task: `<split>/{corpus,queries,qrels}.jsonl` for retrieval, else `<split>.jsonl` as given."""
    if kind == "retrieval":
        for file_name, file_rows in retrieval_files(rows).items():
            write_jsonl(task_dir / split / f"{file_name}.jsonl", file_rows)
    else:
        write_jsonl(task_dir / f"{split}.jsonl", rows)
