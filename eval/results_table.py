"""`python -m eval.results_table [--chart PATH]`: the README's results table and chart, read from saved comparisons.

The systems were scored at different times by `python -m eval.compare` (each saved file under `benchmarks/results/`
heads its tables with the command that made them). This module only reads those tables back: each README row names
the files and the system name it takes its scores from (`ROWS`), so the README cannot say what no saved file says
(`tests/test_readme.py` compares the two). Nothing is re-encoded.

Example:
    >>> from eval.results_table import read_tables
    >>> read_tables("| system | a (ndcg_at_10) | average |\\n|---|---:|---:|\\n| bm25 | 89.95 | 89.95 |")
    [{'bm25': {'a': 89.95}}]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


logger = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
CHART = Path(__file__).resolve().parents[1] / "benchmarks" / "compare.png"
IN_DOMAIN = ("debian_description", "pydoc_summary", "debian_section", "pydoc_module", "debian_tags_pairs")
OUT_OF_DOMAIN = ("info_section", "info_manual")
OURS = ("`make train` (180 steps, 59 min)", "`make demo` (12 min)")  # the rows this repository's recipes trained
PEER = "all-MiniLM-L6-v2"
# README row -> (saved file, system name in that file), merged in order. A task scored in two places must agree.
ROWS = {
    OURS[0]: [("compare-train.txt", "nvembed-train")],
    OURS[1]: [("compare-demo.txt", "nvembed-s2section")],
    "SmolLM2-135M, raw, mean pooling": [("compare.txt", "raw-mean"), ("compare-demo.txt", "raw-mean")],
    PEER: [("compare.txt", "minilm"), ("compare-demo.txt", "minilm")],
    "BM25 (bm25s), retrieval only": [("compare.txt", "bm25"), ("compare-demo.txt", "bm25")],
}


def read_tables(text: str) -> list[dict[str, dict[str, float]]]:
    """Every `| system | task (metric) | ... |` table of a saved comparison -> [{system: {task: score}}]; `-` cells
    and the `average` column are left out (averages are recomputed from the tasks)."""
    tables, header = [], None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            header = None
        elif cells[0] == "system":
            header = [c.split(" (")[0] for c in cells]
            tables.append({})
        elif header and not set(cells[0]) <= set("-: "):
            if len(cells) != len(header):
                raise ValueError(f"row {cells[0]!r} has {len(cells)} cells, its header {len(header)}")
            tables[-1][cells[0]] = {
                task: float(value) for task, value in zip(header[1:], cells[1:]) if task != "average" and value != "-"
            }
    return tables


def system_scores(path: Path, system: str) -> dict[str, float]:
    """The scores of `system` in the saved comparison `path`; it must be in exactly one of the file's tables."""
    found = [table[system] for table in read_tables(path.read_text(encoding="utf-8")) if system in table]
    if len(found) != 1:
        raise ValueError(f"{path.name}: system {system!r} is in {len(found)} tables, expected exactly one")
    return found[0]


def readme_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, float]]:
    """README row -> task -> score (x 100), merged from the saved files of `ROWS`."""
    rows = {}
    for label, sources in ROWS.items():
        merged: dict[str, float] = {}
        for file_name, system in sources:
            for task, score in system_scores(results_dir / file_name, system).items():
                if task in merged and merged[task] != score:
                    raise ValueError(f"{label}: {task} is {merged[task]} in one file and {score} in {file_name}")
                merged[task] = score
        rows[label] = merged
    return rows


def in_domain_average(scores: dict[str, float]) -> float | None:
    """Mean of the five in-domain tasks; None when one was not run (BM25 only retrieves)."""
    if not all(task in scores for task in IN_DOMAIN):
        return None
    return sum(scores[task] for task in IN_DOMAIN) / len(IN_DOMAIN)


def markdown(results: dict[str, dict[str, float]]) -> str:
    columns = [*IN_DOMAIN, "in-domain avg", *OUT_OF_DOMAIN]
    lines = ["| system | " + " | ".join(columns) + " |", "|---" + "|---:" * len(columns) + "|"]
    for label, scores in results.items():
        values = {**scores, "in-domain avg": in_domain_average(scores)}
        lines.append(
            f"| {label} | " + " | ".join("-" if values.get(c) is None else f"{values[c]:.1f}" for c in columns) + " |"
        )
    return "\n".join(lines)


def out_of_domain_gaps(results: dict[str, dict[str, float]]) -> str:
    """One sentence: where the peer stays ahead of our recipes out of domain, in numbers."""
    peer = results[PEER]
    parts = [
        f"{task} {peer[task]:.1f} vs " + " and ".join(f"{results[row][task]:.1f} ({row})" for row in OURS)
        for task in OUT_OF_DOMAIN
    ]
    return f"Out of domain {PEER} stays ahead: " + "; ".join(parts) + "."


def chart(results: dict[str, dict[str, float]], path: Path) -> Path:
    """`eval.run.bar_chart` of the rows (scores / 100, as eval.compare hands it mteb's scores)."""
    from eval.run import bar_chart
    from eval.tasks import get_tasks

    tasks = get_tasks([*IN_DOMAIN, *OUT_OF_DOMAIN], data_dir=path.parent)  # metadata only: nothing is loaded
    scaled = {label.replace("`", ""): {t: v / 100 for t, v in row.items()} for label, row in results.items()}
    return bar_chart(scaled, tasks, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.results_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--chart", type=Path, default=CHART, help="where the bar chart goes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = readme_results(args.results_dir)
    print(markdown(results))
    logger.info("wrote %s", chart(results, args.chart))
    return 0


if __name__ == "__main__":
    sys.exit(main())
