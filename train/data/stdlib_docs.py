"""CPython standard-library docstrings, read with ``ast`` (no module is imported), and the two pydoc task builders.

Source: the ``.py`` files under ``sysconfig.get_paths()["stdlib"]`` of the running interpreter (override with
``$NVEMBED_STDLIB_DIR``), without tests, ``idlelib``, ``lib2to3``, ``turtledemo`` and ``site-packages``. An item is
a module, class or public function/method whose docstring follows PEP 257: a one-line summary, a blank line, then
a body.

Group key of both tasks: the dotted module name, so every docstring of a module lands in the same split for both
tasks.
"""

from __future__ import annotations

import ast
import functools
import logging
import os
import sysconfig
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .core import SourceNotFoundError, SplitSizes, dedup_rows, split_rows, take


logger = logging.getLogger(__name__)

EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages", "__pycache__"}
)
MAX_SIGNATURE_CHARS = 200


@dataclass(frozen=True)
class Docstring:
    """One documented stdlib object.

    Args:
        module (`str`): Dotted module name (``email.mime.text``).
        qualname (`str`): Qualified name inside the module; empty for the module docstring.
        kind (`str`): "module", "class" or "function".
        signature (`str`): ``def name(args)`` / ``class Name(bases)`` / ``module name``.
        summary (`str`): First line of the docstring.
        body (`str`): The rest of the docstring, after the blank line.
    """

    module: str
    qualname: str
    kind: str
    signature: str
    summary: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.module}.{self.qualname}" if self.qualname else self.module

    @property
    def family(self) -> str:
        """Top-level package or module (``email`` for ``email.mime.text``)."""
        return self.module.split(".")[0]


def split_docstring(docstring: str, max_summary_lines: int = 2) -> tuple[str, str] | None:
    """Returns (summary, body) of a PEP 257 docstring, or None if it has no short summary followed by a body.

    The summary is the first paragraph when it has at most ``max_summary_lines`` lines (a one-line summary that
    was wrapped at 79 columns), 3 or more words and 10 to 250 characters. A docstring without a blank line counts
    when its first line is a full sentence (ends with ".").

    Example:
        >>> split_docstring("Return the sum of x and y.\n\nLonger text.")
        ('Return the sum of x and y.', 'Longer text.')
        >>> split_docstring("Only a summary, no body.") is None
        True
    """
    lines = [line.rstrip() for line in docstring.strip().splitlines()]
    if len(lines) < 2 or not lines[0].strip():
        return None
    if "" in lines:
        blank = lines.index("")
    elif lines[0].endswith("."):  # "Summary.\nBody..." without the blank line: the first line is still a sentence
        blank = 1
    else:
        return None
    summary = " ".join(" ".join(lines[:blank]).split())
    body = "\n".join(lines[blank:]).strip()
    # C-style summaries ("foo(a, b) -> int") are signatures, not summaries; "email.utils" is a title.
    if blank > max_summary_lines or not body or "(" in summary.split(" ")[0] or len(summary.split()) < 3:
        return None
    if not 10 <= len(summary) <= 250:
        return None
    return summary, body


def _signature(node: ast.AST, qualname: str) -> str:
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(base) for base in node.bases)
        text = f"class {qualname}({bases})" if bases else f"class {qualname}"
    else:
        text = f"def {qualname}({ast.unparse(node.args)})"
    return text if len(text) <= MAX_SIGNATURE_CHARS else text[: MAX_SIGNATURE_CHARS - 3] + "..."


def parse_module_source(source: str, module: str) -> list[Docstring]:
    """Returns the documented items of one module's source text.

    Items are the module itself, its classes, and functions and methods (dunder names excluded);
    functions nested in functions are skipped.

    Args:
        source: Python source code.
        module: Dotted module name to record.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old stdlib strings
        tree = ast.parse(source)
    items = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if child.name.startswith("__"):  # dunders say "Return repr(self)." and the like
                continue
            qualname = f"{prefix}{child.name}"
            add(child, qualname, "class" if isinstance(child, ast.ClassDef) else "function")
            if isinstance(child, ast.ClassDef):
                visit(child, qualname + ".")

    def add(node: ast.AST, qualname: str, kind: str) -> None:
        docstring = ast.get_docstring(node, clean=True)
        parts = split_docstring(docstring) if docstring else None
        if parts is None:
            return
        signature = f"module {module}" if kind == "module" else _signature(node, qualname)
        items.append(Docstring(module, qualname, kind, signature, *parts))

    add(tree, "", "module")
    visit(tree, "")
    return items


def module_name(path: Path, root: Path) -> str:
    """Returns the dotted module name of ``path`` below ``root`` (``email/mime/text.py`` -> ``email.mime.text``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stdlib_dir(path: str | Path | None = None) -> Path:
    """Returns the stdlib folder: ``path``, else ``$NVEMBED_STDLIB_DIR``, else the running interpreter's."""
    return Path(path or os.environ.get("NVEMBED_STDLIB_DIR") or sysconfig.get_paths()["stdlib"])


def load_docstrings(root: str | Path | None = None) -> list[Docstring]:
    """Parses every stdlib module below ``root`` and returns its documented items, sorted by id.

    Args:
        root: The stdlib folder; see ``stdlib_dir``.

    Raises:
        SourceNotFoundError: The folder holds no ``.py`` file.

    Example:
        >>> items = load_docstrings()  # doctest: +SKIP
        >>> items[0].family  # doctest: +SKIP
        'abc'
    """
    root = stdlib_dir(root)
    files = sorted(
        path
        for path in root.rglob("*.py")
        if not EXCLUDED_DIRS.intersection(path.relative_to(root).parts[:-1])
        and not path.relative_to(root).parts[0].startswith("config-")
    )
    if not files:
        raise SourceNotFoundError(
            f"No Python source (*.py) in {root}. Install the interpreter's standard library sources or point "
            "NVEMBED_STDLIB_DIR at them."
        )
    return list(_load_cached(str(root), tuple((str(path), path.stat().st_mtime_ns) for path in files)))


@functools.lru_cache(maxsize=4)
def _load_cached(root: str, files: tuple) -> tuple[Docstring, ...]:
    items = []
    for path, _ in files:
        try:
            source = Path(path).read_text(encoding="utf-8")
            items += parse_module_source(source, module_name(Path(path), Path(root)))
        except (SyntaxError, UnicodeDecodeError, ValueError) as error:
            logger.debug("skipping %s: %s", path, error)
    logger.info("parsed %d stdlib docstrings from %d files", len(items), len(files))
    return tuple(sorted(items, key=lambda item: item.id))


def build_pydoc_summary(root: str | Path | None = None, sizes: SplitSizes | None = None) -> dict[str, list[dict]]:
    """Retrieval rows: query = docstring summary line, passage = signature + docstring body.

    Returns:
        {split: rows} with columns ``id``, ``query``, ``passage`` and bookkeeping ``_group`` (the module).
    """
    sizes = sizes or SplitSizes(train=4000, dev=500, test=500)
    rows = [
        {"id": item.id, "query": item.summary, "passage": f"{item.signature}\n\n{item.body}", "_group": item.module}
        for item in load_docstrings(root)
        if len(item.body) >= 40
    ]
    # The signature makes passages unique even when a docstring body is copied (io/_pyio, decimal/_pydecimal),
    # so dedup on the body as well.
    for row in rows:
        row["_body"] = row["passage"].partition("\n\n")[2]
    rows = dedup_rows(rows, ("query", "_body"))
    return {
        split: take(split_rows_, sizes[split], key=lambda r: r["id"])
        for split, split_rows_ in split_rows(rows).items()
    }


def build_pydoc_module(
    root: str | Path | None = None, sizes: SplitSizes | None = None, min_examples: int = 20, max_chars: int = 1500
) -> dict[str, list[dict]]:
    """Clustering rows: text = a docstring (summary + body), label = its top-level package or module.

    Private modules (``_pydecimal``, ``_collections_abc``) are left out, as their family name is not the public
    one; families with fewer than ``min_examples`` docstrings are dropped; each split is balanced across families.

    Returns:
        {split: rows} with columns ``text``, ``label`` and bookkeeping ``_group`` (the module).
    """
    sizes = sizes or SplitSizes(train=3000, dev=500, test=500)
    rows = [
        {
            "text": f"{item.summary}\n\n{item.body}"[:max_chars],
            "label": item.family,
            "_group": item.module,
            "_id": item.id,
        }
        for item in load_docstrings(root)
        if not item.family.startswith("_")
    ]
    rows = dedup_rows(rows, ("text",))
    counts = Counter(row["label"] for row in rows)
    rows = [row for row in rows if counts[row["label"]] >= min_examples]
    return {
        split: take(split_rows_, sizes[split], key=lambda r: r["_id"], balance=lambda r: r["label"])
        for split, split_rows_ in split_rows(rows).items()
    }
