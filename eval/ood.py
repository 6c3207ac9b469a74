"""Out-of-domain evaluation tasks: English text on the machine that no training task touches.

Their rows are built from the GNU Info manuals in `/usr/share/info` by `train/data/info_manuals.py` (what the tasks
are, how they are split, why they are out of domain), below both this module and the training monitor, which scores
a run on their dev split. This module writes them in the layout of `eval/tasks.py`:

- `info_section` (retrieval, nDCG@10): a section's title -> the section's first prose paragraphs.
- `info_manual` (clustering, V-measure): prose paragraphs, clustered by the manual they come from.

    python -m eval.export --output-dir data_cache/eval   # writes them beside the in-domain tasks
"""

from __future__ import annotations

from pathlib import Path

from eval.layout import write_split
from train.data.info_manuals import INFO_DIR, INSTRUCTIONS, KINDS, InfoManualsMissingError, build


__all__ = ["INFO_DIR", "INSTRUCTIONS", "KINDS", "InfoManualsMissingError", "build", "export"]


def export(
    output_dir: Path, splits=("test", "dev"), info_dir: Path = INFO_DIR, max_rows: int | None = None
) -> dict[str, dict[str, int]]:
    """Write the tasks in the layout of `eval/tasks.py`; returns task -> split -> rows."""
    counts: dict[str, dict[str, int]] = {}
    for task, by_split in build(info_dir).items():
        counts[task] = {}
        for split in splits:
            rows = by_split[split]
            if max_rows is not None and len(rows) > max_rows:  # clustering: every k-th row keeps all manuals in
                rows = rows[:: -(-len(rows) // max_rows)] if KINDS[task] == "clustering" else rows[:max_rows]
            write_split(output_dir / task, split, KINDS[task], rows)
            counts[task][split] = len(rows)
    return counts
