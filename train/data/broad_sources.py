"""Readers of the broad training text: manuals, user help, FAQs, novels, a Bible translation and chat Q&A.

The built-in tasks read two registers, both describing software (Debian package descriptions, CPython docstrings).
These sources add prose of other kinds, each installable by package name from the registries this machine reaches:

================== ========================== ============== ===========================================
source             package (registry)         kind           license (the package's copyright file)
================== ========================== ============== ===========================================
debian_handbook    debian-handbook (Debian)   book / guide   CC-BY-SA-3.0 or GPL-2+
debian_reference   debian-reference-en        guide          GPL-2+
debian_faq         debian-faq                 FAQ            GPL-2+
debian_history     debian-history             history        GPL-2
developers_ref     developers-reference       guide          GPL-2
harden_doc         harden-doc                 guide          GPL-2
postgresql_manual  postgresql-doc-15          manual         PostgreSQL, BSD-3-Clause
django_docs        python-django-doc          guides + FAQ   BSD-3-Clause
libreoffice_help   libreoffice-help-en-us     user help      MPL-2.0
gnome_help         gnome-user-docs            user help      CC-BY-SA-3.0
jane_austen        r-cran-janeaustenr         novels         public domain text (package: MIT)
world_english_bible sword-text-web            book           public domain
(paraphrases)      sword-text-kjv             book           public domain (King James Version, verse-aligned
                                                             with the WEB for ``broad_paraphrase`` only)
chat_qa            chatterbot-corpus (PyPI)   dialogue Q&A   BSD-3-Clause
================== ========================== ============== ===========================================

Left out, as reserved for independent evaluation or derived from it: every page that is a manual page's source
(PostgreSQL's ``sql-*``/``app-*`` reference pages, Django's ``django-admin`` page), glossaries (a dictionary), and
(in ``broad.py``) any paragraph sharing a 10-word run with a GNU Info manual that ``eval/ood.py`` reads.

Each reader yields ``Doc`` objects: an id (the split group: a page, a chapter), its sections and an optional
one-line summary. The Debian packages are unpacked by ``train.data.packages`` (``python -m train.data fetch``).
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .core import SourceNotFoundError
from .packages import package_root
from .sections import Section, parse_sections


@dataclass
class Doc:
    """One unit of a source: ``id`` is its split group (all pairs of one doc land in one split)."""

    id: str
    sections: list[Section]
    summary: str = ""


GLOSSARY = re.compile(r"gloss|terminolog", re.I)


def _html_docs(package: str, under: str, pattern: str, exclude: re.Pattern | None = None) -> Iterator[Doc]:
    base = package_root(package) / under
    if not base.is_dir():
        raise SourceNotFoundError(f"{package}: expected its pages under {base}")
    for path in sorted(base.glob(pattern)):
        relative = str(path.relative_to(base))
        if GLOSSARY.search(relative) or (exclude is not None and exclude.search(relative)):
            continue
        document = parse_sections(path.read_text(encoding="utf-8", errors="replace"))
        if document.sections and GLOSSARY.search(document.sections[0].heading):
            continue
        yield Doc(f"{package}:{relative}", document.sections, document.summary)


def debian_handbook() -> Iterator[Doc]:
    return _html_docs("debian-handbook", "usr/share/doc/debian-handbook/html/en-US", "*.html")


def debian_reference() -> Iterator[Doc]:
    return _html_docs("debian-reference-en", "usr/share/debian-reference", "*.en.html")


def debian_faq() -> Iterator[Doc]:
    return _html_docs("debian-faq", "usr/share/doc/debian/FAQ", "*.en.html")


def debian_history() -> Iterator[Doc]:
    return _html_docs("debian-history", "usr/share/doc/debian-history/docs", "*.en.html")


def developers_reference() -> Iterator[Doc]:
    return _html_docs("developers-reference", "usr/share/developers-reference", "*.html")


def harden_doc() -> Iterator[Doc]:
    return _html_docs("harden-doc", "usr/share/doc/harden-doc/html/en-US", "*.html")


def postgresql_manual() -> Iterator[Doc]:
    # sql-*/app-* pages are the sources of PostgreSQL's manual pages (reserved for evaluation).
    return _html_docs(
        "postgresql-doc-15", "usr/share/doc/postgresql-doc-15/html", "*.html", re.compile(r"^(sql|app)-")
    )


def django_docs() -> Iterator[Doc]:
    return _html_docs(
        "python-django-doc", "usr/share/doc/python-django-doc/html", "**/*.html", re.compile(r"django-admin|^_|^man/")
    )


def libreoffice_help() -> Iterator[Doc]:
    return _html_docs("libreoffice-help-en-us", "usr/share/libreoffice/help/en-US", "**/*.html")


def gnome_help() -> Iterator[Doc]:
    return _html_docs("gnome-user-docs", "usr/share/help/C", "**/*.page")


# -- books ---------------------------------------------------------------------------------------------------------


class _RReader:
    """Just enough of R's serialization format (XDR, version 2/3) to read character vectors and lists.

    R's lazy-load databases (``Rdata.rdx``/``.rdb``) are how R packages ship data; there is no Python reader for
    them in the registries this machine reaches (pyreadr reads .rds/.rda files, not lazy-load databases).
    """

    def __init__(self, data: bytes):
        self.data, self.at, self.symbols = data, 0, []

    def _int(self) -> int:
        (value,) = struct.unpack(">i", self.data[self.at : self.at + 4])
        self.at += 4
        return value

    def read(self):
        if self.data[:2] != b"X\n":
            raise ValueError("not an R XDR serialization")
        self.at = 2
        version = self._int()
        self.at += 8
        if version == 3:
            self.at += 4 + self._int()  # native encoding name
        return self._item()

    def _item(self):
        flags = self._int()
        kind, has_attributes, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (254, 242, 251, 253):  # NULL, empty / base / global environment
            return None
        if kind == 255:  # reference to an earlier symbol
            return self.symbols[(flags >> 8) - 1]
        if kind == 1:  # symbol
            symbol = self._item()
            self.symbols.append(symbol)
            return symbol
        if kind == 9:  # CHARSXP
            length = self._int()
            if length == -1:
                return None
            text = self.data[self.at : self.at + length].decode("utf-8", errors="replace")
            self.at += length
            return text
        if kind == 2:  # pairlist (attributes)
            if has_attributes:
                self._item()
            tag = self._item() if has_tag else None
            value, rest = self._item(), self._item()
            return {tag: value, **(rest or {})}
        if kind in (16, 19, 10, 13, 14):  # character, list, logical, integer, double vectors
            length = self._int()
            if kind in (16, 19):
                values = [self._item() for _ in range(length)]
            else:
                size, code = (8, "d") if kind == 14 else (4, "i")
                values = list(struct.unpack(f">{length}{code}", self.data[self.at : self.at + size * length]))
                self.at += size * length
            attributes = self._item() if has_attributes else None
            return (values, attributes) if attributes else values
        raise ValueError(f"R serialization type {kind} at byte {self.at} is not supported")


def read_r_lazyload(folder: Path, name: str = "Rdata") -> dict[str, list]:
    """Every object of an R lazy-load database (``name.rdx`` index, ``name.rdb`` zlib blobs), by name."""
    index = _RReader(gzip.decompress((folder / f"{name}.rdx").read_bytes())).read()
    (variables, _references, _compressed), _ = index
    offsets, attributes = variables
    blob = (folder / f"{name}.rdb").read_bytes()
    objects = {}
    for (offset, length), key in zip(offsets, attributes["names"]):
        value = _RReader(zlib.decompress(blob[offset + 4 : offset + length])).read()
        objects[key] = value[0] if isinstance(value, tuple) else value
    return objects


CHAPTER = re.compile(r"^(chapter|volume)\b", re.I)


def jane_austen() -> Iterator[Doc]:
    """Austen's six novels (janeaustenr's line vectors): a Doc per chapter, a section per chapter, a paragraph per
    blank-line-separated block."""
    folder = package_root("r-cran-janeaustenr") / "usr/lib/R/site-library/janeaustenr/data"
    for novel, lines in sorted(read_r_lazyload(folder).items()):
        chapter, paragraphs, block = 0, [], []
        for line in [*lines, ""]:
            line = (line or "").strip()
            if line:
                block.append(line)
                continue
            if not block:
                continue
            text = " ".join(block)
            block = []
            if CHAPTER.match(text) and len(text.split()) <= 4:
                if paragraphs:
                    yield Doc(f"austen:{novel}:{chapter}", [Section(f"{novel} {chapter}", paragraphs)])
                chapter, paragraphs = chapter + 1, []
            else:
                paragraphs.append(text)
        if paragraphs:
            yield Doc(f"austen:{novel}:{chapter}", [Section(f"{novel} {chapter}", paragraphs)])


OSIS_NOTE = re.compile(r"<note\b.*?</note>", re.S)
OSIS_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title>", re.S)
OSIS_TAG = re.compile(r"<[^>]+>")
OSIS_CHAPTER = re.compile(r'<chapter\b[^>]*osisID="([^"]+)"')
OSIS_SPACE_BEFORE = re.compile(r"\s+([,.;:!?\u201d\u2019])")  # a note's place left a space before punctuation
OSIS_PARAGRAPH = re.compile(r'<div\b[^>]*type="x-p"')
# The WEB's last entry (after Revelation 22:21) carries its glossary, a dictionary: reserved, so cut off
OSIS_GLOSSARY = re.compile(r'<div\b[^>]*type="glossary".*', re.S)


def read_sword_ztext(folder: Path, testament: str) -> list[str]:
    """The raw OSIS entries of a SWORD zText module (``ot``/``nt``): ``.bzv`` verse index (block, offset, size),
    ``.bzs`` block index (offset, size, raw size), ``.bzz`` zlib blocks. No SWORD reader is packaged for Python."""
    verses, blocks = (folder / f"{testament}.bzv").read_bytes(), {}
    blocks_index = (folder / f"{testament}.bzs").read_bytes()
    compressed = (folder / f"{testament}.bzz").read_bytes()
    entries = []
    for i in range(len(verses) // 10):
        block, offset, size = struct.unpack("<IIH", verses[i * 10 : i * 10 + 10])
        if size == 0:
            entries.append("")
            continue
        if block not in blocks:
            start, length, _ = struct.unpack("<III", blocks_index[block * 12 : block * 12 + 12])
            blocks[block] = zlib.decompress(compressed[start : start + length])
        entries.append(blocks[block][offset : offset + size].decode("utf-8", errors="replace"))
    return entries


def world_english_bible() -> Iterator[Doc]:
    """The World English Bible: a Doc per chapter; a section per titled passage; paragraphs at OSIS ``x-p``."""
    folder = package_root("sword-text-web") / "usr/share/sword/modules/texts/ztext/engWEB2015eb"
    for testament in ("ot", "nt"):
        chapter, sections, paragraph = None, [], []

        def close_paragraph():
            if paragraph and sections:
                sections[-1].paragraphs.append(OSIS_SPACE_BEFORE.sub(r"\1", " ".join(" ".join(paragraph).split())))
            paragraph.clear()

        for entry in read_sword_ztext(folder, testament):
            entry = _without_notes(entry)
            if match := OSIS_CHAPTER.search(entry):
                close_paragraph()
                if chapter and any(s.paragraphs for s in sections):
                    yield Doc(f"web:{chapter}", [s for s in sections if s.paragraphs])
                chapter, sections = match.group(1), [Section(match.group(1))]
                continue
            for title in OSIS_TITLE.findall(entry):
                close_paragraph()
                sections.append(Section(" ".join(OSIS_TAG.sub("", title).split())))
            if OSIS_PARAGRAPH.search(entry):
                close_paragraph()
            text = OSIS_TAG.sub("", OSIS_TITLE.sub("", entry)).strip()
            if text and chapter:
                paragraph.append(text)
        close_paragraph()
        if chapter and any(s.paragraphs for s in sections):
            yield Doc(f"web:{chapter}", [s for s in sections if s.paragraphs])


def _without_notes(entry: str) -> str:
    """An OSIS entry without its footnotes and without the WEB's closing glossary."""
    return OSIS_NOTE.sub(" ", OSIS_GLOSSARY.sub("", entry))


def bible_verses(package: str) -> tuple[dict[tuple[str, int], str], dict[str, int]]:
    """Every verse of the SWORD zText Bible in Debian package ``package``, keyed by (chapter osisID, slot), and the
    slot count of each chapter: the slot counts the module's index entries after the chapter's own entry, so two
    modules of one versification line up verse by verse. Notes, headings and markup are removed (Strong's numbers,
    added-word marks)."""
    modules = package_root(package) / "usr/share/sword/modules/texts/ztext"
    folders = sorted(modules.glob("*/ot.bzv")) if modules.is_dir() else []
    if not folders:
        raise SourceNotFoundError(f"{package} is not unpacked under {modules}: python -m train.data fetch")
    verses, slots = {}, {}
    for testament in ("ot", "nt"):
        chapter, slot = None, 0
        for entry in read_sword_ztext(folders[0].parent, testament):
            if match := OSIS_CHAPTER.search(entry):
                chapter, slot = match.group(1), 0
                continue
            if chapter is None:
                continue
            slot += 1
            slots[chapter] = slot
            text = OSIS_TAG.sub("", OSIS_TITLE.sub("", _without_notes(entry))).replace("\u00b6", " ")
            text = OSIS_SPACE_BEFORE.sub(r"\1", " ".join(text.split()))
            if text:
                verses[(chapter, slot)] = text
    return verses, slots


def bible_paraphrases() -> Iterator[tuple[str, str, str]]:
    """("chapter osisID:slot", King James verse, World English Bible verse) for every verse both translations have, in
    chapters of the same length in both (their versifications, KJV and NRSVA, differ in a few)."""
    (kjv, kjv_slots), (web, web_slots) = bible_verses("sword-text-kjv"), bible_verses("sword-text-web")
    for (chapter, slot), old in kjv.items():
        if kjv_slots[chapter] == web_slots.get(chapter) and (chapter, slot) in web:
            yield f"{chapter}:{slot}", old, web[(chapter, slot)]


def chat_qa() -> Iterator[Doc]:
    """chatterbot-corpus's English conversations: each conversation's first line is a heading (the question) and the
    next line its answer; a Doc per topic file."""
    import yaml

    spec = importlib.util.find_spec("chatterbot_corpus")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SourceNotFoundError(
            "PyPI package chatterbot-corpus is not installed: pip install --no-deps -r requirements-assets.txt"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "english"
    for path in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        sections = [
            Section(str(turns[0]).strip(), [str(turns[1]).strip()])
            for turns in data.get("conversations") or []
            if isinstance(turns, list) and len(turns) >= 2 and turns[0] and turns[1]
        ]
        yield Doc(f"chat:{path.stem}", sections)


@dataclass(frozen=True)
class BroadSource:
    name: str
    package: str  # the Debian package (or, for chat_qa, the PyPI distribution)
    registry: str  # "debian" or "pypi"
    text_kind: str
    license: str
    read: Callable[[], Iterator[Doc]]


SOURCES: dict[str, BroadSource] = {
    s.name: s
    for s in [
        BroadSource("debian_handbook", "debian-handbook", "debian", "book", "CC-BY-SA-3.0 or GPL-2+", debian_handbook),
        BroadSource("debian_reference", "debian-reference-en", "debian", "guide", "GPL-2+", debian_reference),
        BroadSource("debian_faq", "debian-faq", "debian", "faq", "GPL-2+", debian_faq),
        BroadSource("debian_history", "debian-history", "debian", "history", "GPL-2", debian_history),
        BroadSource("developers_ref", "developers-reference", "debian", "guide", "GPL-2", developers_reference),
        BroadSource("harden_doc", "harden-doc", "debian", "guide", "GPL-2", harden_doc),
        BroadSource("postgresql_manual", "postgresql-doc-15", "debian", "manual", "PostgreSQL", postgresql_manual),
        BroadSource("django_docs", "python-django-doc", "debian", "guide+faq", "BSD-3-Clause", django_docs),
        BroadSource("libreoffice_help", "libreoffice-help-en-us", "debian", "user help", "MPL-2.0", libreoffice_help),
        BroadSource("gnome_help", "gnome-user-docs", "debian", "user help", "CC-BY-SA-3.0", gnome_help),
        BroadSource("jane_austen", "r-cran-janeaustenr", "debian", "novels", "public domain (MIT)", jane_austen),
        BroadSource("world_english_bible", "sword-text-web", "debian", "book", "public domain", world_english_bible),
        BroadSource("chat_qa", "chatterbot-corpus", "pypi", "dialogue", "BSD-3-Clause", chat_qa),
    ]
}
PARAPHRASE_PACKAGES = ("sword-text-kjv",)  # verse-aligned with sword-text-web: broad_paraphrase's other side
DEBIAN_PACKAGES = tuple(s.package for s in SOURCES.values() if s.registry == "debian") + PARAPHRASE_PACKAGES
