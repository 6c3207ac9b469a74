"""`python -m eval.export [--tasks ...] [--splits test dev] [--output-dir DIR]`: write the eval folder the tasks read.

Reads `train.data.load_source(name)` (splits train/dev/test) and writes the jsonl layout documented in `eval/tasks.py`
to DIR (default `$NVEMBED_EVAL_DIR` or `<repo>/data_cache/eval`). Classification also gets its train split: mteb fits
its logistic regression on train embeddings. For retrieval, each query's one relevant document is its own passage and
the corpus is every passage of the split.

Example:
    python -m eval.export --tasks debian_description pydoc_module --output-dir /tmp/eval
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.layout import default_eval_dir, retrieval_files, write_split


__all__ = ["COLUMNS", "OOD_TASK_NAMES", "TASK_NAMES", "export", "export_task", "retrieval_files"]


logger = logging.getLogger(__name__)

TASK_NAMES = ("debian_description", "pydoc_summary", "debian_section", "pydoc_module", "debian_tags_pairs")
OOD_TASK_NAMES = ("info_section", "info_manual")  # eval/ood.py: evaluation-only text, no training split


COLUMNS = {
    "classification": ("text", "label"),
    "clustering": ("text", "label"),
    "sts": ("sentence1", "sentence2", "score"),
}


def export_task(
    name: str, kind: str, dataset: Any, output_dir: Path, splits: Sequence[str], max_rows: int | None = None
) -> dict[str, int]:
    """Writes one task's splits under `output_dir/name`; returns split -> number of rows (queries for retrieval).

    `max_rows` caps each evaluation split (the first rows, which are in hash order); classification's train split,
    which mteb samples from, is never capped."""
    if kind != "retrieval" and kind not in COLUMNS:
        raise ValueError(f"task '{name}' has kind '{kind}'; eval knows retrieval, {', '.join(COLUMNS)}")
    task_dir = output_dir / name
    wanted = list(dict.fromkeys(["train", *splits] if kind == "classification" else splits))
    counts = {}
    for split in wanted:
        if split not in dataset:
            raise ValueError(f"source '{name}' has no '{split}' split (has {sorted(dataset)})")
        rows = dataset[split].to_list()
        if max_rows is not None and split != "train":
            rows = rows[:max_rows]
        write_split(
            task_dir, split, kind, rows if kind == "retrieval" else [{c: r[c] for c in COLUMNS[kind]} for r in rows]
        )
        counts[split] = len(rows)
    return counts


def export(
    tasks: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    splits: Sequence[str] = ("test", "dev"),
    max_rows: int | None = None,
) -> dict[str, dict[str, int]]:
    """Exports the named tasks (default: all, in-domain and out-of-domain); returns task -> split -> rows."""
    from eval import ood
    from train.data import TASKS, load_source

    output_dir = Path(output_dir) if output_dir else default_eval_dir()
    names = list(tasks or (*TASK_NAMES, *OOD_TASK_NAMES))
    counts = {}
    for name in names:
        if name in TASK_NAMES:
            counts[name] = export_task(name, TASKS[name].kind, load_source(name), output_dir, splits, max_rows)
            logger.info("exported %s: %s -> %s", name, counts[name], output_dir / name)
    if any(name in OOD_TASK_NAMES for name in names):
        counts.update({k: v for k, v in ood.export(output_dir, splits, max_rows=max_rows).items() if k in names})
    kinds = {**{n: TASKS[n].kind for n in TASK_NAMES}, **ood.KINDS}
    instructions = {**{n: TASKS[n].instruction for n in TASK_NAMES}, **ood.INSTRUCTIONS}
    manifest_path = output_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    for name, rows in counts.items():
        manifest[name] = {"kind": kinds[name], "instruction": instructions[name], "rows": rows}
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=None, choices=(*TASK_NAMES, *OOD_TASK_NAMES))
    parser.add_argument("--splits", nargs="+", default=["test", "dev"], choices=["test", "dev"])
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--max-rows", type=int, default=None, help="cap each dev/test split (a quicker check)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(export(args.tasks, args.output_dir, args.splits, args.max_rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
