"""Debian package metadata from apt's lists: parser and the three Debian task builders.

Source: the ``*_Packages`` indexes in ``/var/lib/apt/lists`` (Package, Source, Section, Tag, short Description,
Description-md5) joined with the ``*_i18n_Translation-en`` indexes (long descriptions, matched by package name and
Description-md5). Since Debian 7 the Packages files carry only the short description; the long one is in
Translation-en, which apt fetches only when ``Acquire::Languages`` includes "en" (Docker images set "none")::

    apt-get update -o Acquire::Languages=en

Indexes may be plain, gz, xz, bz2 (read with the standard library) or lz4/zst (read with apt's own
``apt-helper cat-file``, else the ``lz4``/``zstd`` command), so no extra Python package is needed.

Group key of every Debian task: the source package (``Source:`` without version, else the package name), so the
binary packages of one source (``foo``, ``foo-doc``, ``libfoo-dev``), which often share their long description,
never straddle splits.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import logging
import lzma
import os
import random
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .core import SourceNotFoundError, SplitSizes, dedup_rows, split_rows, take


logger = logging.getLogger(__name__)

DEFAULT_APT_LISTS_DIR = Path("/var/lib/apt/lists")
APT_HELPER = Path("/usr/lib/apt/apt-helper")
FETCH_HINT = "apt-get update -o Acquire::Languages=en"

# Descriptions of these are about packaging, not software.
BOILERPLATE_MARKERS = ("transitional package", "transitional dummy package", "dummy package", "dummy transitional")
# Debtags facets that describe form rather than function (interface, language, toolkit), dropped from tag sets
# before computing pair scores: two unrelated command-line tools written in C would otherwise look alike.
FORM_FACETS = ("role", "implemented-in", "interface", "uitoolkit", "x11", "scope", "made-of", "culture", "iso15924")
# Sections that hold no software of their own kind.
EXCLUDED_SECTIONS = ("oldlibs", "metapackages", "tasks")


@dataclass(frozen=True)
class DebianPackage:
    """One binary package with its English description.

    Args:
        name (`str`): Binary package name.
        source (`str`): Source package name (the name itself when the index has no ``Source:``).
        section (`str`): Archive section without component prefix (``libs``, ``python``, ...).
        short (`str`): One-line synopsis.
        long (`str`): Extended description, paragraphs separated by blank lines.
        tags (`tuple[str, ...]`): Debtags, ``facet::value``.
    """

    name: str
    source: str
    section: str
    short: str
    long: str
    tags: tuple[str, ...]


def read_index(path: str | Path) -> str:
    """Returns the text of one apt index file, decompressing it by suffix.

    Args:
        path: An index file, e.g. ``..._main_binary-amd64_Packages.lz4``.

    Raises:
        SourceNotFoundError: The file is compressed with lz4/zst and neither apt-helper nor the matching command is
            installed.
    """
    path = Path(path)
    openers = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}
    if path.suffix in openers:
        with openers[path.suffix](path, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    if path.suffix not in (".lz4", ".zst"):
        return path.read_text(encoding="utf-8", errors="replace")
    tool = {".lz4": "lz4", ".zst": "zstd"}[path.suffix]
    if APT_HELPER.exists():
        command = [str(APT_HELPER), "cat-file", str(path)]
    elif shutil.which(tool):
        command = [tool, "-dc", str(path)]
    else:
        raise SourceNotFoundError(f"Cannot decompress {path}: neither {APT_HELPER} nor `{tool}` is installed.")
    result = subprocess.run(command, check=True, capture_output=True)
    return result.stdout.decode("utf-8", errors="replace")


def parse_deb822(text: str) -> Iterator[dict[str, str]]:
    """Yields the stanzas of a deb822 file (Packages, Translation) as {field: value}.

    Continuation lines are kept verbatim (with their leading space) after a newline, as in the file.

    Example:
        >>> list(parse_deb822("Package: a\\nTag: x::y,\\n z::w\\n\\nPackage: b\\n"))
        [{'Package': 'a', 'Tag': 'x::y,\\n z::w'}, {'Package': 'b'}]
    """
    stanza: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if stanza:
                yield stanza
            stanza, last = {}, None
        elif line[0] in " \t":
            if last is not None:
                stanza[last] += "\n" + line
        else:
            name, _, value = line.partition(":")
            last = name.strip()
            stanza[last] = value.strip()
    if stanza:
        yield stanza


def format_long_description(raw: str) -> str:
    """Turns deb822 extended-description lines into plain text.

    Lines starting with one space are wrapped text (joined with spaces), " ." is a paragraph break, and lines with
    two or more leading spaces are verbatim (kept on their own line), per Debian Policy 5.6.13.
    """
    paragraphs: list[list[str]] = [[]]
    for line in raw.splitlines():
        body = line[1:] if line.startswith(" ") else line
        if body.strip() == ".":
            paragraphs.append([])
        elif body.startswith((" ", "\t")):
            paragraphs[-1].append("\n" + body.strip())
        elif body.strip():
            # Wrapped text: one space between lines and words (many descriptions put two after a full stop).
            paragraphs[-1].append((" " if paragraphs[-1] else "") + " ".join(body.split()))
    texts = ["".join(parts).strip() for parts in paragraphs]
    return "\n\n".join(text for text in texts if text)


def _index_files(lists_dir: Path, pattern: str) -> list[Path]:
    # Plain main archive first, then -updates and -security, so later entries override earlier ones.
    files = [path for path in lists_dir.glob(pattern) if path.is_file() and not path.name.endswith(".diff_Index")]
    return sorted(files, key=lambda path: ("-updates" in path.name or "-security" in path.name, path.name))


def _fingerprint(files: list[Path]) -> tuple:
    return tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files)


def find_apt_indexes(lists_dir: str | Path | None = None) -> tuple[list[Path], list[Path]]:
    """Returns (Packages files, Translation-en files) in ``lists_dir``.

    Args:
        lists_dir: apt's lists folder; defaults to ``$NVEMBED_APT_LISTS_DIR`` or ``/var/lib/apt/lists``.

    Raises:
        SourceNotFoundError: No Packages index, or no Translation-en index (long descriptions), with the command
            that fetches them.
    """
    lists_dir = Path(lists_dir or os.environ.get("NVEMBED_APT_LISTS_DIR", DEFAULT_APT_LISTS_DIR))
    packages = _index_files(lists_dir, "*_Packages*")
    if not packages:
        raise SourceNotFoundError(
            f"No Debian package index (*_Packages*) in {lists_dir}. Run `{FETCH_HINT}` (as root) to download the "
            "apt lists, or point NVEMBED_APT_LISTS_DIR at a folder that holds them."
        )
    translations = _index_files(lists_dir, "*_i18n_Translation-en*")
    if not translations:
        raise SourceNotFoundError(
            f"No Translation-en index in {lists_dir}: the Packages files hold only one-line descriptions and the "
            f"long ones are in Translation-en, which apt skips when Acquire::Languages is 'none'. Run `{FETCH_HINT}`."
        )
    return packages, translations


def load_debian_packages(lists_dir: str | Path | None = None) -> list[DebianPackage]:
    """Parses apt's lists into packages that have a long English description, sorted by name.

    Args:
        lists_dir: apt's lists folder; defaults to ``$NVEMBED_APT_LISTS_DIR`` or ``/var/lib/apt/lists``.

    Returns:
        One ``DebianPackage`` per binary package name (the -updates/-security entry wins over the main archive).

    Raises:
        SourceNotFoundError: The indexes are missing (see ``find_apt_indexes``).

    Example:
        >>> packages = load_debian_packages()  # doctest: +SKIP
        >>> packages[0].short  # doctest: +SKIP
        'Real-time strategy game of ancient warfare'
    """
    packages, translations = find_apt_indexes(lists_dir)
    return list(_load_cached(_fingerprint(packages), _fingerprint(translations)))


@functools.lru_cache(maxsize=4)
def _load_cached(package_files: tuple, translation_files: tuple) -> tuple[DebianPackage, ...]:
    long_by_md5: dict[str, str] = {}
    for path, _, _ in translation_files:
        for stanza in parse_deb822(read_index(path)):
            if "Description-md5" in stanza and "Description-en" in stanza:
                _, _, raw_long = stanza["Description-en"].partition("\n")
                long_by_md5[stanza["Description-md5"]] = format_long_description(raw_long)
    by_name: dict[str, DebianPackage] = {}
    for path, _, _ in package_files:
        for stanza in parse_deb822(read_index(path)):
            name = stanza.get("Package")
            description = stanza.get("Description") or stanza.get("Description-en", "")
            short, _, inline_long = description.partition("\n")
            long = format_long_description(inline_long) or long_by_md5.get(stanza.get("Description-md5", ""), "")
            if not name or not short or not long:
                continue
            tags = tuple(sorted({tag.strip() for tag in stanza.get("Tag", "").replace("\n", " ").split(",")} - {""}))
            by_name[name] = DebianPackage(
                name=name,
                source=stanza.get("Source", name).split(" ")[0],
                section=stanza.get("Section", "").rpartition("/")[2],
                short=short.strip(),
                long=long,
                tags=tags,
            )
    logger.info("parsed %d Debian packages with long descriptions (%d translations)", len(by_name), len(long_by_md5))
    return tuple(by_name[name] for name in sorted(by_name))


def _usable(package: DebianPackage) -> bool:
    text = f"{package.short}\n{package.long}".lower()
    return 60 <= len(package.long) <= 3000 and not any(marker in text for marker in BOILERPLATE_MARKERS)


def _first_paragraph(text: str, max_chars: int = 400) -> str:
    paragraph = text.split("\n\n")[0].strip()
    if len(paragraph) <= max_chars:
        return paragraph
    cut = paragraph[:max_chars]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > max_chars // 3 else cut.rsplit(" ", 1)[0]


def build_debian_description(
    lists_dir: str | Path | None = None, sizes: SplitSizes | None = None
) -> dict[str, list[dict]]:
    """Retrieval rows: query = a package's one-line synopsis, passage = its long description.

    Rows are deduplicated on both texts (the binaries of one source often share a long description), at most two
    rows are kept per source package, and sampling is balanced across archive sections so that the thousands of
    formulaic Rust/Go/Perl library packages do not crowd out the rest.

    Returns:
        {split: rows} with columns ``id``, ``query``, ``passage`` and bookkeeping ``_group``.
    """
    # train: up to 20000 (v2; v1 kept 4000): a long CPU run sees each pair about once instead of four times
    sizes = sizes or SplitSizes(train=20000, dev=500, test=500)
    rows = [
        {"id": f"debian:{p.name}", "query": p.short, "passage": p.long, "_group": p.source, "_section": p.section}
        for p in load_debian_packages(lists_dir)
        if _usable(p)
    ]
    splits = split_rows(dedup_rows(rows, ("query", "passage")))
    return {
        split: take(split_rows_, sizes[split], key=lambda r: r["id"], balance=lambda r: r["_section"], per_group=2)
        for split, split_rows_ in splits.items()
    }


def build_debian_section(
    lists_dir: str | Path | None = None, sizes: SplitSizes | None = None, min_examples: int = 100
) -> dict[str, list[dict]]:
    """Classification rows: text = synopsis + long description, label = archive section.

    Sections with fewer than ``min_examples`` usable packages overall (and ``oldlibs``, ``metapackages``, ``tasks``)
    are dropped; each split is then balanced across labels by round-robin sampling, which caps every label at about
    ``size / n_labels`` rows.

    Returns:
        {split: rows} with columns ``text``, ``label`` and bookkeeping ``_group``.
    """
    sizes = sizes or SplitSizes(train=4000, dev=600, test=600)
    rows = [
        {"text": f"{p.short}\n\n{p.long}", "label": p.section, "_group": p.source, "_id": p.name}
        for p in load_debian_packages(lists_dir)
        if _usable(p) and p.section and p.section not in EXCLUDED_SECTIONS
    ]
    rows = dedup_rows(rows, ("text",))
    counts = Counter(row["label"] for row in rows)
    rows = [row for row in rows if counts[row["label"]] >= min_examples]
    splits = split_rows(rows)
    return {
        split: take(split_rows_, sizes[split], key=lambda r: r["_id"], balance=lambda r: r["label"], per_group=2)
        for split, split_rows_ in splits.items()
    }


def informative_tags(packages: list[DebianPackage], max_share: float = 0.03) -> dict[str, frozenset[str]]:
    """Returns {package name: tags} keeping only tags that say what the software does.

    Drops the ``FORM_FACETS`` facets and tags carried by more than ``max_share`` of the tagged packages
    (``devel::library``, ``use::...`` catch-alls), which would make unrelated packages look alike.
    """
    tag_sets = {
        p.name: frozenset(tag for tag in p.tags if tag.split("::")[0] not in FORM_FACETS) for p in packages if p.tags
    }
    frequency = Counter(tag for tags in tag_sets.values() for tag in tags)
    too_common = {tag for tag, count in frequency.items() if count > max_share * max(len(tag_sets), 1)}
    return {name: tags - too_common for name, tags in tag_sets.items() if tags - too_common}


def jaccard_score(tags_a: frozenset[str], tags_b: frozenset[str]) -> float:
    """Returns 5 x Jaccard(tags_a, tags_b), rounded to 0.01: 5 = same tag set, 0 = no shared tag."""
    union = tags_a | tags_b
    return round(5.0 * len(tags_a & tags_b) / len(union), 2) if union else 0.0


def build_debian_tags_pairs(
    lists_dir: str | Path | None = None, sizes: SplitSizes | None = None, min_tags: int = 2, seed: int = 0
) -> dict[str, list[dict]]:
    """STS rows: two package descriptions scored 0..5 by the overlap of their debtags.

    How a score is made: each package keeps its ``informative_tags`` (function facets such as ``use::``,
    ``works-with::``, ``field::``, ``game::``, ``protocol::``, minus tags on more than 3% of packages); packages with
    fewer than ``min_tags`` are dropped. score = 5 x |A & B| / |A | B| (Jaccard). A sentence is the synopsis plus the
    first paragraph of the long description.

    Pairs are formed inside each split only (packages were split by source package first), never between two
    binaries of one source, and for each anchor three partners are drawn to spread the scores: the most
    overlapping candidate, a random candidate sharing at least one tag, and a random package sharing none.

    Returns:
        {split: rows} with columns ``sentence1``, ``sentence2``, ``score`` and bookkeeping ``_group`` (the anchor's
        source) and ``_group2`` (the partner's source).
    """
    sizes = sizes or SplitSizes(train=3000, dev=600, test=600)
    packages = [p for p in load_debian_packages(lists_dir) if _usable(p)]
    tags = informative_tags(packages)
    items = [
        {"name": p.name, "text": f"{p.short}. {_first_paragraph(p.long)}", "_group": p.source, "tags": tags[p.name]}
        for p in packages
        if len(tags.get(p.name, ())) >= min_tags
    ]
    items = dedup_rows(items, ("text",))
    result = {}
    for split, split_items in split_rows(items).items():
        rng = random.Random(f"{seed}:{split}")
        by_tag: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(split_items):
            for tag in item["tags"]:
                by_tag[tag].append(index)
        anchors = take(split_items, sizes[split], key=lambda r: r["name"], per_group=1)
        position = {item["name"]: index for index, item in enumerate(split_items)}
        pairs, seen = [], set()
        for anchor in anchors:
            a = position[anchor["name"]]
            overlapping = sorted({b for tag in anchor["tags"] for b in by_tag[tag]} - {a})
            overlapping = [b for b in overlapping if split_items[b]["_group"] != anchor["_group"]]
            if len(overlapping) > 200:
                overlapping = rng.sample(overlapping, 200)
            partners = []
            if overlapping:
                scored = sorted(overlapping, key=lambda b: (-jaccard_score(anchor["tags"], split_items[b]["tags"]), b))
                partners += [scored[0], rng.choice(overlapping)]
            for _ in range(10):
                b = rng.randrange(len(split_items))
                if not anchor["tags"] & split_items[b]["tags"] and split_items[b]["_group"] != anchor["_group"]:
                    partners.append(b)
                    break
            for b in partners:
                if (min(a, b), max(a, b)) in seen:
                    continue
                seen.add((min(a, b), max(a, b)))
                partner = split_items[b]
                pairs.append(
                    {
                        "sentence1": anchor["text"],
                        "sentence2": partner["text"],
                        "score": jaccard_score(anchor["tags"], partner["tags"]),
                        "_group": anchor["_group"],
                        "_group2": partner["_group"],
                    }
                )
        result[split] = take(pairs, sizes[split], key=lambda r: r["sentence1"] + "\x00" + r["sentence2"])
    return result
