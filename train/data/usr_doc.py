"""Paragraph pairs from the documentation Debian installs under ``/usr/share/doc``: general English prose.

The built-in tasks read two registers (Debian package descriptions, CPython docstrings). The READMEs, FAQs and
release notes under ``/usr/share/doc/<package>/`` are written by hundreds of other authors about everything from
compression to fonts, in free prose. They have no labels, so they give a self-supervised retrieval task in the
manner of Contriever / inverse cloze: a prose paragraph is the query, the paragraph that follows it in the same
document is its positive, and the in-batch negatives are paragraphs of other documents. Beside MNRL the bundled
teacher's in-batch similarities are distilled on the same rows (`distill_weight`), so the student sees the
teacher's geometry on text outside the two training registers.

Left out so that evaluation stays independent: packages whose GNU Info manual is an out-of-domain evaluation task
(`eval/ood.py` reads ``/usr/share/info``); any paragraph that shares a run of ``SHINGLE_WORDS`` words with an Info
manual (other packages ship copies of that text: util-linux's parse-date.txt, gettext's ABOUT-NLS); the sources
reserved for independent evaluation (Python's documentation package, WordNet, man pages, fortune files); the Debian
boilerplate (``copyright``, ``changelog*``). A paragraph counts as prose when it has ``MIN_WORDS`` to ``MAX_WORDS``
words and at least ``MIN_WORD_SHARE`` of its tokens are plain words (not code, paths, tables or lists of names).

Splits by a hash of the package (``core.split_rows``), so no package is in two splits.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import re
from pathlib import Path

from .core import SourceNotFoundError, SplitSizes, dedup_rows, split_rows, take


logger = logging.getLogger(__name__)

DOC_DIR = Path("/usr/share/doc")
INFO_DIR = Path("/usr/share/info")
DOC_NAME = re.compile(r"^(readme|faq|news|about|intro|overview|usage|history)([._-].*)?$|\.(md|txt|rst)(\.gz)?$", re.I)
EXCLUDED_NAMES = re.compile(r"^(copyright|changelog.*|.*\.debian(\.gz)?|news\.debian.*|readme\.source.*)$", re.I)
# Reserved for independent evaluation (DEVELOPERS.md) or read by eval/ood.py.
RESERVED_PACKAGES = re.compile(r"^(python3?(\.\d+)?-doc|wordnet.*|fortune.*|fortunes.*|manpages.*|man-db)$")
MIN_WORDS = 20
MAX_WORDS = 150
MIN_WORD_SHARE = 0.8
MAX_PAIRS_PER_PACKAGE = 40  # so that a few long manuals (e.g. a FAQ of 500 paragraphs) do not make up the task
SHINGLE_WORDS = 10
PLAIN_WORD = re.compile(r"^[(\"']?[A-Za-z][a-z'-]*[)\"']?[.,;:!?)]*$")


def info_packages(info_dir: Path = INFO_DIR) -> frozenset[str]:
    """Names of the GNU Info manuals (``coreutils``, ``grep``, ...), whose packages this task leaves out."""
    if not info_dir.is_dir():
        return frozenset()
    return frozenset(path.name.split(".")[0].split("-")[0] for path in info_dir.iterdir())


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[int]:
    """Hashes of every run of ``n`` words of ``text`` (case folded)."""
    words = text.casefold().split()
    return {hash(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}


def info_shingles(info_dir: Path = INFO_DIR) -> set[int]:
    """``shingles`` of every GNU Info manual's whole text."""
    found: set[int] = set()
    if info_dir.is_dir():
        for path in sorted(info_dir.iterdir()):
            found |= shingles(_read(path))
    return found


def is_prose(paragraph: str) -> bool:
    words = paragraph.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    return sum(1 for word in words if PLAIN_WORD.match(word)) >= MIN_WORD_SHARE * len(words)


def prose_paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks of ``text``, whitespace collapsed, that pass ``is_prose``, in order."""
    blocks = (" ".join(block.split()) for block in re.split(r"\n\s*\n", text))
    return [block for block in blocks if is_prose(block)]


def _read(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict") as handle:
            return handle.read()
    except (UnicodeDecodeError, OSError, EOFError) as error:
        logger.debug("skipping %s: %s", path, error)
        return ""


def doc_files(doc_dir: Path = DOC_DIR, info_dir: Path = INFO_DIR) -> list[tuple[str, Path]]:
    """(package, file) for every documentation file this task reads, sorted."""
    excluded = info_packages(info_dir)
    files = []
    for package_dir in sorted(p for p in doc_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        package = package_dir.name
        if RESERVED_PACKAGES.match(package) or package.split("-")[0] in excluded or package in excluded:
            continue
        for path in sorted(package_dir.rglob("*")):
            if path.is_file() and DOC_NAME.search(path.name) and not EXCLUDED_NAMES.match(path.name):
                files.append((package, path))
    return files


@functools.lru_cache(maxsize=2)
def _pairs(doc_dir: str, info_dir: str) -> tuple[dict, ...]:
    rows = []
    evaluated = info_shingles(Path(info_dir))
    for package, path in doc_files(Path(doc_dir), Path(info_dir)):
        paragraphs = [p for p in prose_paragraphs(_read(path)) if not shingles(p) & evaluated]
        # Non-overlapping neighbours (0, 1), (2, 3), ...: every paragraph is in one pair at most.
        for i in range(0, len(paragraphs) - 1, 2):
            rows.append(
                {
                    "id": f"{path.relative_to(doc_dir)}:{i}",
                    "query": paragraphs[i],
                    "passage": paragraphs[i + 1],
                    "_group": package,
                }
            )
    return tuple(rows)


def build_doc_paragraphs(
    doc_dir: str | Path | None = None, info_dir: str | Path | None = None, sizes: SplitSizes | None = None
) -> dict[str, list[dict]]:
    """Retrieval rows: query = a prose paragraph of a document under ``doc_dir``, passage = the next one.

    Args:
        doc_dir: The documentation folder (None: ``$NVEMBED_DOC_DIR``, else ``/usr/share/doc``).
        info_dir: The GNU Info manuals left out (None: ``$NVEMBED_INFO_DIR``, else ``/usr/share/info``).

    Returns:
        {split: rows} with columns ``id``, ``query``, ``passage`` and bookkeeping ``_group`` (the package).

    Raises:
        SourceNotFoundError: ``doc_dir`` holds no prose paragraphs (no documentation installed).
    """
    sizes = sizes or SplitSizes(train=6000, dev=500, test=500)
    doc_dir = Path(doc_dir or os.environ.get("NVEMBED_DOC_DIR") or DOC_DIR)
    info_dir = Path(info_dir or os.environ.get("NVEMBED_INFO_DIR") or INFO_DIR)
    rows = dedup_rows(_pairs(str(doc_dir), str(info_dir)), ("query", "passage")) if doc_dir.is_dir() else []
    if not rows:
        raise SourceNotFoundError(
            f"No prose paragraphs in the documentation under {doc_dir}. The task reads the READMEs, FAQs and "
            "release notes Debian packages install there; images built with path-exclude=/usr/share/doc/* "
            "(dpkg.cfg.d) have none."
        )
    return {
        split: take(split_rows_, sizes[split], key=lambda r: r["id"], per_group=MAX_PAIRS_PER_PACKAGE)
        for split, split_rows_ in split_rows(rows).items()
    }
