"""Training tasks cut from the broad sources' structure (``broad_sources.py``), and the text pool of all of them.

=================== ==================================================== =========================================
task                query                                                positive
=================== ==================================================== =========================================
broad_title_section a section's heading, or a help page's summary         the section's first paragraphs
broad_qa            a FAQ heading that is a question, a chat question     its answer
broad_neighbours    a passage of a manual, a novel, the Bible             the passage that follows it
broad_paraphrase    a verse of the King James Version (1769)             the same verse in the World English Bible
=================== ==================================================== =========================================

``broad_paraphrase`` is the one symmetric task: two wordings of one meaning, archaic and modern English, trained and
used with no instruction on either side (plain ``encode()``, STS, deduplication). Its rows of a chapter share that
chapter's split with the WEB's other rows.

``broad_texts(split)`` is every distinct passage and heading of a split: the unrelated texts on which the student
learns the teacher's similarity structure (``teacher_geometry`` in a run config's stage, ``train.pipeline``).

Every text is cleaned the same way: paragraphs under ``MIN_WORDS`` words are dropped (navigation, captions, "Table of
Contents"), paragraphs over ``MAX_WORDS`` are cut at sentence ends into chunks of at most that many words (the
training length is 64 tokens), and any text sharing a ``SHINGLE_WORDS``-word run with a GNU Info manual is dropped
(``eval/ood.py`` evaluates on those). Splits are 80/10/10 by a hash of the document (a page, a chapter), so no page is
in two splits; dedup runs over the whole source before splitting (``core``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

from .broad_sources import SOURCES, Doc
from .core import SourceNotFoundError, SplitSizes, dedup_rows, split_rows, stable_hash, take
from .packages import packages_dir
from .usr_doc import INFO_DIR, info_shingles, shingles


logger = logging.getLogger(__name__)

MIN_WORDS = 6
MAX_WORDS = 80
SECTION_WORDS = 100  # a title's positive: the section's first paragraphs up to this many words
MAX_TITLE_WORDS = 12
DEV_TEST_PER_GROUP = 5  # dev/test rows per document, so a few long pages do not make up the split
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
NOT_A_TITLE = re.compile(
    r"^(table of contents|contents|note|notes|tip|tips|warning|caution|important|example|examples|see also|"
    r"last update|next topic|previous topic|this page|quick search|navigation|related topics|legal notice|"
    r"more information|procedure|index|search)\b|:$|^\S+$|^[\w.]+ \d+$",
    re.I,
)
TITLED_SOURCES = frozenset(SOURCES) - {"jane_austen", "world_english_bible", "chat_qa"}


def chunks(paragraph: str, max_words: int = MAX_WORDS) -> list[str]:
    """``paragraph`` as is if it has at most ``max_words`` words, else cut at sentence ends into chunks of at most
    ``max_words`` words (a sentence longer than that is its own chunk, cut at ``max_words``).

    Example:
        >>> chunks("One two. Three four. Five six.", max_words=4)
        ['One two. Three four.', 'Five six.']
    """
    if len(paragraph.split()) <= max_words:
        return [paragraph]
    out, current = [], []
    for sentence in SENTENCE_END.split(paragraph):
        words = sentence.split()
        if current and len(current) + len(words) > max_words:
            out.append(" ".join(current))
            current = []
        current.extend(words)
        while len(current) > max_words:
            out.append(" ".join(current[:max_words]))
            current = current[max_words:]
    if current:
        out.append(" ".join(current))
    return out


@functools.lru_cache(maxsize=2)
def _evaluated_shingles(info_dir: str) -> frozenset[int]:
    return frozenset(info_shingles(Path(info_dir)))


def _info_dir() -> str:
    return os.environ.get("NVEMBED_INFO_DIR") or str(INFO_DIR)


def _clean(texts: list[str]) -> list[str]:
    evaluated = _evaluated_shingles(_info_dir())
    return [
        piece
        for text in texts
        if len(text.split()) >= MIN_WORDS
        for piece in chunks(text)
        if len(piece.split()) >= MIN_WORDS and not shingles(piece) & evaluated
    ]


def _documents() -> tuple[tuple[str, Doc], ...]:
    """(source name, doc) of every source; a missing source fails with the command that fetches it."""
    return _read_documents(str(packages_dir()))


@functools.lru_cache(maxsize=2)
def _read_documents(_packages_dir: str) -> tuple[tuple[str, Doc], ...]:  # cached per packages folder
    docs, missing = [], []
    for name, source in SOURCES.items():
        try:
            docs.extend((name, doc) for doc in source.read())
        except SourceNotFoundError as error:
            missing.append(str(error))
    if missing:
        raise SourceNotFoundError("Broad training text is missing:\n" + "\n".join(missing))
    return tuple(docs)


def _is_title(heading: str) -> bool:
    words = heading.split()
    return 2 <= len(words) <= MAX_TITLE_WORDS and not heading.endswith("?") and not NOT_A_TITLE.search(heading)


def _section_text(paragraphs: list[str]) -> str:
    words: list[str] = []
    for paragraph in paragraphs:
        if len(words) >= SECTION_WORDS:
            break
        words.extend(paragraph.split())
    return " ".join(words[:SECTION_WORDS])


def _rows(kind: str) -> list[dict]:
    rows = []
    for source, doc in _documents():
        group = f"{source}:{doc.id}"
        cleaned = [(section.heading, _clean(section.paragraphs)) for section in doc.sections]
        if kind == "title_section":
            if source not in TITLED_SOURCES:
                continue
            if doc.summary and len(doc.summary.split()) >= 4:
                body = [p for _, paragraphs in cleaned for p in paragraphs]
                if body:
                    rows.append({"id": f"{group}#summary", "query": doc.summary, "passage": _section_text(body)})
            for i, (heading, paragraphs) in enumerate(cleaned):
                if paragraphs and _is_title(heading):
                    rows.append({"id": f"{group}#{i}", "query": heading, "passage": _section_text(paragraphs)})
        elif kind == "qa":
            for i, (heading, paragraphs) in enumerate(cleaned):
                answer = _section_text(paragraphs) if source != "chat_qa" else " ".join(doc.sections[i].paragraphs)
                if heading.endswith("?") and len(heading.split()) >= 2 and answer:
                    rows.append({"id": f"{group}#{i}", "query": heading, "passage": answer})
        elif kind == "neighbours":
            if source == "chat_qa":
                continue
            passages = [p for _, paragraphs in cleaned for p in paragraphs]
            # Non-overlapping neighbours (0, 1), (2, 3), ...: every passage is in one pair at most.
            for i in range(0, len(passages) - 1, 2):
                rows.append({"id": f"{group}#{i}", "query": passages[i], "passage": passages[i + 1]})
        else:
            raise ValueError(f"unknown broad task kind {kind!r}")
    return rows


def _paraphrase_rows() -> list[dict]:
    from .broad_sources import bible_paraphrases
    from .core import normalize

    evaluated, rows = _evaluated_shingles(_info_dir()), []
    for verse, old, new in bible_paraphrases():
        lengths = len(old.split()), len(new.split())
        if min(lengths) < MIN_WORDS or max(lengths) > MAX_WORDS or max(lengths) > 2 * min(lengths):
            continue  # a verse merged or split differently in one of the two
        if normalize(old) == normalize(new) or shingles(old) & evaluated or shingles(new) & evaluated:
            continue
        chapter = verse.rsplit(":", 1)[0]
        rows.append({"id": f"world_english_bible:web:{chapter}#{verse}", "query": old, "passage": new})
    return rows


def _build(kind: str, sizes: SplitSizes | None) -> dict[str, list[dict]]:
    sizes = sizes or SplitSizes(train=60000, dev=500, test=500)
    rows = sorted(_paraphrase_rows() if kind == "paraphrase" else _rows(kind), key=lambda r: r["id"])
    for row in rows:
        row["_group"] = row["id"].split("#")[0]  # the document: all its rows share a split
    rows = dedup_rows(rows, ("query", "passage"))
    out = {}
    for split, split_rows_ in split_rows(rows).items():
        per_group = None if split == "train" else DEV_TEST_PER_GROUP
        out[split] = take(split_rows_, sizes[split], key=lambda r: r["id"], per_group=per_group)
    logger.info("broad_%s: %s rows", kind, {split: len(r) for split, r in out.items()})
    return out


def build_broad_title_section(sizes: SplitSizes | None = None) -> dict[str, list[dict]]:
    """Retrieval rows: a section's heading (or a Mallard page's summary) -> the section's first paragraphs."""
    return _build("title_section", sizes)


def build_broad_qa(sizes: SplitSizes | None = None) -> dict[str, list[dict]]:
    """Retrieval rows: a question (FAQ heading, chat question) -> its answer."""
    return _build("qa", sizes)


def build_broad_neighbours(sizes: SplitSizes | None = None) -> dict[str, list[dict]]:
    """Retrieval rows: a passage -> the passage that follows it in the same document."""
    return _build("neighbours", sizes)


def build_broad_paraphrase(sizes: SplitSizes | None = None) -> dict[str, list[dict]]:
    """Symmetric rows: a King James verse -> the same verse in the World English Bible."""
    return _build("paraphrase", sizes)


def broad_texts(split: str = "train", limit: int | None = None, seed: int = 42) -> list[str]:
    """Distinct passages and headings of every broad source's ``split`` documents, in a seeded stable order.

    The text pool of the ``teacher_geometry`` stage entry: unrelated texts the teacher embeds once and the student
    learns the similarity structure of.
    """
    from .core import normalize, split_of

    seen, texts = set(), []
    for source, doc in _documents():
        if split_of(f"{source}:{doc.id}") != split:
            continue
        headings = [s.heading for s in doc.sections if source in TITLED_SOURCES and _is_title(s.heading)]
        questions = [s.heading for s in doc.sections if s.heading.endswith("?")]
        for text in [*headings, *questions, *_clean([p for s in doc.sections for p in s.paragraphs])]:
            key = normalize(text)
            if key not in seen:
                seen.add(key)
                texts.append(text)
    texts.sort(key=lambda t: (stable_hash(f"{seed}:{t}"), t))
    return texts[:limit] if limit is not None else texts
