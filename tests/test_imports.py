"""The repository's modules import each other without circles, and training does not reach up into evaluation.

Read from the source with `ast` (nothing is imported), counting imports inside functions too: a lazy import hides a
circle from Python but not from a reader. A helper that two modules both need lives in a module below both
(`train/cache.py`, `eval/layout.py`, `nvembed_defaults.py`, `train/data/info_manuals.py`,
`train/data/local_or_hub.py`).
"""

import ast
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("train", "eval", "publish", "corpus", "serve", "benchmarks")


def module_files() -> dict[str, Path]:
    files = {p.stem: p for p in ROOT.glob("*.py")}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the repository modules it imports anywhere in its file (`from pkg import submodule` counts both)."""
    graph = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets.add(module)
                targets.update(f"{module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files())


def test_graph_sees_the_imports_it_must(graph):
    # The reader itself: a lazy import inside a function, a relative import and a `from package import module`.
    assert "train.cache" in graph["train.distill"]
    assert "eval.layout" in graph["eval.ood"]
    assert "train.data" in graph["train.data.__main__"]  # `from . import TASKS, ...`
    assert "train.data.tasks" in graph["train.data.hub"]  # `from .tasks import KIND_FEATURES`
    assert "eval.ood" in graph["eval.export"]  # `from eval import ood`, inside export()


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles(graph):
    found = [sorted(c) for c in cycles(graph)]
    assert not found, f"import circles: {found}; move what both sides need into a module below both"


def test_training_does_not_import_evaluation(graph):
    edges = {(m, t) for m, targets in graph.items() if m.startswith("train") for t in targets if t.startswith("eval")}
    assert not edges, (
        f"train imports eval: {sorted(edges)}; move what both need below both (train/ or a shared module)"
    )
