"""The README says only what saved files say: its results table equals the saved comparisons, cell by cell, and the
files, pictures and make targets it names exist, and its serving and corpus commands are what the code takes."""

import re
import shlex
from pathlib import Path

import pytest

from eval.results_table import IN_DOMAIN, OUT_OF_DOMAIN, in_domain_average, readme_results, system_scores
from publish.card import recipe_comparison


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TABLE = re.compile(r"<!-- results-table:[^\n]*-->\n(.*?)\n<!-- /results-table -->", re.S)
COLUMNS = [*IN_DOMAIN, "in-domain avg", *OUT_OF_DOMAIN]


def readme_table(text: str) -> dict[str, dict[str, float | None]]:
    """The README's marked results table -> row label -> column -> number (None for '-')."""
    match = TABLE.search(text)
    if match is None:
        raise ValueError("README.md has no <!-- results-table --> ... <!-- /results-table --> block")
    lines = match.group(1).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    if header[1:] != COLUMNS:
        raise ValueError(f"README results table columns {header[1:]} != {COLUMNS}")
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = {c: None if v == "-" else float(v.strip("*")) for c, v in zip(COLUMNS, cells[1:])}
    return rows


def mismatches(table: dict[str, dict[str, float | None]], saved: dict[str, dict[str, float]]) -> list[str]:
    """Every cell where the README differs from the saved scores rounded as the README prints them (0.1)."""
    if list(table) != list(saved):
        return [f"rows {list(table)} != saved rows {list(saved)}"]
    found = []
    for label, scores in saved.items():
        expected = {**scores, "in-domain avg": in_domain_average(scores)}
        for column in COLUMNS:
            want = expected.get(column)
            want = None if want is None else float(f"{want:.1f}")
            if table[label][column] != want:
                found.append(f"{label} / {column}: README {table[label][column]}, saved {want}")
    return found


def test_readme_results_table_matches_the_saved_comparisons():
    assert mismatches(readme_table(README.read_text(encoding="utf-8")), readme_results()) == []


def test_a_changed_number_is_caught():
    table = readme_table(README.read_text(encoding="utf-8"))
    label = next(iter(table))
    saved = table[label]["pydoc_summary"]
    table[label]["pydoc_summary"] = saved + 0.1
    assert mismatches(table, readme_results()) == [f"{label} / pydoc_summary: README {saved + 0.1}, saved {saved}"]
    del table[label]
    assert mismatches(table, readme_results())[0].startswith("rows ")


def test_a_system_in_two_tables_of_one_file_is_refused(tmp_path):
    table = "| system | debian_description (ndcg_at_10) | average |\n|---|---:|---:|\n| nvembed | {v} | {v} |\n"
    path = tmp_path / "compare.txt"
    path.write_text(table.format(v="10.00") + "\nlater run:\n\n" + table.format(v="20.00"), encoding="utf-8")
    with pytest.raises(ValueError, match="in 2 tables"):
        system_scores(path, "nvembed")
    with pytest.raises(ValueError, match="in 0 tables"):
        system_scores(path, "minilm")


def test_files_and_pictures_the_readme_names_exist():
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"\]\(([^)#]+)\)", text)) | set(re.findall(r"`((?:docs|benchmarks)/[^`\s]+)`", text))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert named and missing == []
    assert any(p.endswith(".png") for p in named)


def test_the_two_setup_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    text = README.read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert f"make {target}" in text
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_the_model_card_compares_with_the_same_saved_table(tmp_path):
    comparison = recipe_comparison()
    assert comparison["table"] == TABLE.search(README.read_text(encoding="utf-8")).group(1)
    peer = readme_results()["all-MiniLM-L6-v2"]
    assert all(f"{task} {peer[task]:.1f} vs" in comparison["out_of_domain"] for task in OUT_OF_DOMAIN)
    assert recipe_comparison(tmp_path / "absent") is None


def readme_command_args(module: str) -> list[list[str]]:
    """The arguments of every `python -m MODULE ...` line in the README's shell blocks (comments cut)."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            _, marker, rest = line.partition(f"python -m {module} ")
            if marker:
                found.append(shlex.split(rest.split("  #")[0]))
    return found


def test_the_readme_serving_and_corpus_commands_parse_and_send_known_fields():
    """The user guide's commands and requests are what the code takes (run by hand on 2026-12-07 too)."""
    pytest.importorskip("ray")
    from corpus.encode import build_parser
    from serve.__main__ import parse_args
    from serve.app import EmbeddingRequest

    serve_lines, corpus_lines = readme_command_args("serve"), readme_command_args("corpus.encode")
    assert serve_lines and corpus_lines
    for args in serve_lines:
        parse_args(args)  # argparse exits on an unknown flag
    for args in corpus_lines:
        build_parser().parse_args(args)
    text = README.read_text(encoding="utf-8")
    sent = set(re.findall(r'"(\w+)": ', text[text.index("### Serve it") : text.index("### Encode a corpus")]))
    assert {"model", "input", "prompt_name", "instruction"} <= sent
    assert sent <= set(EmbeddingRequest.model_fields), sent - set(EmbeddingRequest.model_fields)
