"""The broad training text: section parsing, the package readers (R lazy-load, SWORD zText, chat YAML), and the
three broad tasks built from the fetched packages (`make` fetches them; `python -m train.data fetch`)."""

import gzip
import json
import struct
import zlib

import pytest

from train import data
from train.data import broad, broad_sources, core, packages
from train.data.core import SourceNotFoundError
from train.data.sections import Section, parse_sections


def test_sections_keep_headings_and_prose_and_skip_code_tables_and_navigation():
    page = """<html><head><title>Page title</title></head><body>
    <div class="navheader"><p>Prev Next</p></div>
    <h2 class="title">3.1. Installing the system<a class="headerlink">¶</a></h2>
    <div class="para">Publican writes paragraphs as divs.</div>
    <p>A plain paragraph with <b>markup</b> inside.</p>
    <pre><p>not text</p></pre><table><tr><td><p>cell</p></td></tr></table>
    <div class="sphinxsidebar"><h3>Quick search</h3><p>sidebar</p></div>
    <h3>Why?</h3><p>Because.</p></body></html>"""
    document = parse_sections(page)
    assert document.sections == [
        Section(
            "Installing the system", ["Publican writes paragraphs as divs.", "A plain paragraph with markup inside."]
        ),
        Section("Why?", ["Because."]),
    ]


def test_mallard_page_gives_its_summary_and_titled_sections():
    page = """<page xmlns="http://projectmallard.org/1.0/" id="x"><info><title type="link">Link title</title>
    <desc>Change how fast the pointer moves.</desc></info><title>Mouse speed</title>
    <p>Open the settings.</p><section><title>Touchpads</title><p>Use two fingers.</p></section></page>"""
    document = parse_sections(page)
    assert document.summary == "Change how fast the pointer moves."
    assert [(s.heading, s.paragraphs) for s in document.sections] == [
        ("Mouse speed", ["Open the settings."]),
        ("Touchpads", ["Use two fingers."]),
    ]


def test_long_paragraphs_are_cut_at_sentence_ends():
    sentence = "word " * 29 + "end."
    pieces = broad.chunks(" ".join([sentence] * 5), max_words=80)
    assert [len(p.split()) for p in pieces] == [60, 60, 30]
    assert broad.chunks("word " * 200, max_words=80) == [" ".join(["word"] * 80)] * 2 + [" ".join(["word"] * 40)]


# -- package readers on hand-made package folders ------------------------------------------------------------------


def _r_char_vector(values: list[str]) -> bytes:
    out = struct.pack(">ii", 16, len(values))
    for value in values:
        encoded = value.encode()
        out += struct.pack(">ii", 9 | (1 << 15), len(encoded)) + encoded  # CHARSXP, UTF-8 flag
    return out


def _r_serialized(body: bytes) -> bytes:
    return b"X\n" + struct.pack(">iii", 2, 0x040201, 0x020300) + body


def _write_r_lazyload(folder, objects: dict[str, list[str]]) -> None:
    """A lazy-load database as R writes it: zlib blobs (4-byte length first) and a gzip index of their offsets."""
    blob, offsets = b"", []
    for values in objects.values():
        raw = _r_serialized(_r_char_vector(values))
        chunk = struct.pack(">I", len(raw)) + zlib.compress(raw)
        offsets.append((len(blob), len(chunk)))
        blob += chunk
    (folder / "Rdata.rdb").write_bytes(blob)

    def int_vector(values):
        return struct.pack(">ii", 13, len(values)) + b"".join(struct.pack(">i", v) for v in values)

    def names_attribute(names):  # pairlist(names = c(...)) then NULL
        return (
            struct.pack(">i", 2 | (1 << 10))
            + struct.pack(">i", 1)
            + struct.pack(">ii", 9, 5)
            + b"names"
            + (_r_char_vector(names))
            + struct.pack(">i", 254)
        )

    offsets_list = struct.pack(">ii", 19 | (1 << 9), len(offsets)) + b"".join(int_vector(o) for o in offsets)
    variables = offsets_list + names_attribute(list(objects))
    references = struct.pack(">ii", 19 | (1 << 9), 0) + names_attribute([])
    index = struct.pack(">ii", 19 | (1 << 9), 3) + variables + references + int_vector([1])
    index += names_attribute(["variables", "references", "compressed"])
    (folder / "Rdata.rdx").write_bytes(gzip.compress(_r_serialized(index)))


def _fetched(root, package):
    folder = root / package
    folder.mkdir(parents=True)
    (folder / "fetched.json").write_text(json.dumps({"package": package, "version": "test"}))
    return folder


def test_r_lazyload_reader_and_novel_chapters(tmp_path, monkeypatch):
    monkeypatch.setenv("NVEMBED_PACKAGES_DIR", str(tmp_path))
    folder = _fetched(tmp_path, "r-cran-janeaustenr") / "usr/lib/R/site-library/janeaustenr/data"
    folder.mkdir(parents=True)
    lines = ["EMMA", "", "CHAPTER I", "", "First paragraph,", "over two lines.", "", "Second one.", ""]
    lines += ["CHAPTER II", "", "Third paragraph."]
    _write_r_lazyload(folder, {"emma": lines, "persuasion": ["Chapter 1", "", "Sir Walter."]})
    assert broad_sources.read_r_lazyload(folder)["persuasion"] == ["Chapter 1", "", "Sir Walter."]
    docs = list(broad_sources.jane_austen())
    assert [(d.id, d.sections[0].paragraphs) for d in docs] == [
        ("austen:emma:0", ["EMMA"]),  # the title page, before the first chapter
        ("austen:emma:1", ["First paragraph, over two lines.", "Second one."]),
        ("austen:emma:2", ["Third paragraph."]),
        ("austen:persuasion:1", ["Sir Walter."]),
    ]


def _write_ztext(folder, testament: str, entries: list[str]) -> None:
    """A SWORD zText module: one zlib block of every entry, verse index (block, offset, size), block index."""
    raw = "".join(entries).encode()
    compressed = zlib.compress(raw)
    (folder / f"{testament}.bzz").write_bytes(compressed)
    (folder / f"{testament}.bzs").write_bytes(struct.pack("<III", 0, len(compressed), len(raw)))
    index, at = b"", 0
    for entry in entries:
        size = len(entry.encode())
        index += struct.pack("<IIH", 0, at, size)
        at += size
    (folder / f"{testament}.bzv").write_bytes(index)


def test_sword_reader_groups_verses_into_paragraphs_per_chapter(tmp_path, monkeypatch):
    monkeypatch.setenv("NVEMBED_PACKAGES_DIR", str(tmp_path))
    folder = _fetched(tmp_path, "sword-text-web") / "usr/share/sword/modules/texts/ztext/engWEB2015eb"
    folder.mkdir(parents=True)
    ot = [
        "",
        '<chapter n="1" osisID="Gen.1" sID="Gen.1"/>',
        '<w lemma="a">In</w> <w>the</w> beginning<note placement="foot">a note</note>, God created.',
        "The earth was empty.",
        '<div sID="p1" type="x-p"/>God said, “Let there be light.”',
        '<chapter n="2" osisID="Gen.2" sID="Gen.2"/>',
        '<title type="x-section">The Seventh Day</title>The heavens were finished.',
    ]
    _write_ztext(folder, "ot", ot)
    _write_ztext(folder, "nt", ["", '<chapter osisID="Matt.1"/>', "The book of the genealogy."])
    docs = list(broad_sources.world_english_bible())
    assert [(d.id, [(s.heading, s.paragraphs) for s in d.sections]) for d in docs] == [
        (
            "web:Gen.1",
            [("Gen.1", ["In the beginning, God created. The earth was empty.", "God said, “Let there be light.”"])],
        ),
        ("web:Gen.2", [("The Seventh Day", ["The heavens were finished."])]),
        ("web:Matt.1", [("Matt.1", ["The book of the genealogy."])]),
    ]


def test_bible_paraphrases_pair_verses_of_equal_chapters_and_cut_the_glossary(tmp_path, monkeypatch):
    """KJV and WEB verses line up by (chapter, slot); a chapter of different length in the two (another
    versification) gives no pairs, and the WEB's closing glossary (a dictionary: reserved) is cut off."""
    monkeypatch.setenv("NVEMBED_PACKAGES_DIR", str(tmp_path))
    glossary = ' <div sID="g1" type="glossary"/><title>World English Bible Glossary</title>Abba Abba means father.'
    modules = {
        ("sword-text-kjv", "engKJV2006eb"): (
            ["", '<chapter osisID="Gen.1"/>', '<w lemma="strong:H7225">In the beginning</w> God created.',
             "And the earth was void.", '<chapter osisID="Gen.2"/>', "Thus the heavens were finished.", "And on"],
            ["", '<chapter osisID="Rev.22"/>', "The grace of our Lord be with you all. Amen."],
        ),
        ("sword-text-web", "engWEB2015eb"): (
            ["", '<chapter osisID="Gen.1"/>', "In the beginning, God created<note>n</note>.",
             '<title type="x-section">Day</title>The earth was empty.', '<chapter osisID="Gen.2"/>',
             "The heavens were finished."],
            ["", '<chapter osisID="Rev.22"/>', "The grace of the Lord be with all the saints. Amen." + glossary],
        ),
    }  # fmt: skip
    for (package, module), (ot, nt) in modules.items():
        folder = _fetched(tmp_path, package) / "usr/share/sword/modules/texts/ztext" / module
        folder.mkdir(parents=True)
        _write_ztext(folder, "ot", ot)
        _write_ztext(folder, "nt", nt)
    assert list(broad_sources.bible_paraphrases()) == [
        ("Gen.1:1", "In the beginning God created.", "In the beginning, God created."),
        ("Gen.1:2", "And the earth was void.", "The earth was empty."),
        (
            "Rev.22:1",
            "The grace of our Lord be with you all. Amen.",
            "The grace of the Lord be with all the saints. Amen.",
        ),
    ]  # Gen.2 has 2 slots in the KJV module and 1 in the WEB one: left out
    web = [p for doc in broad_sources.world_english_bible() for s in doc.sections for p in s.paragraphs]
    assert web[-1] == "The grace of the Lord be with all the saints. Amen." and not any("Abba" in p for p in web)


def test_a_package_not_fetched_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("NVEMBED_PACKAGES_DIR", str(tmp_path))
    with pytest.raises(SourceNotFoundError, match="python -m train.data fetch"):
        broad_sources.debian_faq().__next__()
    broad._read_documents.cache_clear()
    with pytest.raises(SourceNotFoundError, match="debian-handbook"):
        broad.build_broad_qa()


def test_fetch_of_an_unknown_package_fails_with_apts_message(tmp_path):
    with pytest.raises(SourceNotFoundError, match="no-such-package-nvembed"):
        packages.fetch_package("no-such-package-nvembed", root=tmp_path)
    assert not (tmp_path / "no-such-package-nvembed").exists()


# -- the tasks, on the packages `make` fetched ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fetched():
    try:
        for source in broad_sources.SOURCES.values():
            if source.registry == "debian":
                packages.package_root(source.package)
    except SourceNotFoundError as error:
        pytest.fail(f"{error}")  # `make test` fetches them; a missing package is a real failure here
    broad._read_documents.cache_clear()
    return {name: data.TASKS[name].builder() for name in BROAD_TASKS}


BROAD_TASKS = ("broad_title_section", "broad_qa", "broad_neighbours", "broad_paraphrase")


@pytest.mark.parametrize("name", BROAD_TASKS)
def test_broad_tasks_keep_the_split_contract_and_are_stable(fetched, name):
    splits = fetched[name]
    data.check_splits(splits, "retrieval")  # no group or text of dev/test in train, no repeated text
    assert all(splits[split] for split in core.SPLITS)
    for split, rows in splits.items():
        assert all(core.split_of(row["_group"]) == split for row in rows)
    again = data.TASKS[name].builder()  # documents cached, rows rebuilt
    assert [r["id"] for r in again["dev"]] == [r["id"] for r in splits["dev"]]
    assert data.TASKS[name].evaluate is False


def test_broad_text_is_large_varied_and_leaves_reserved_text_out(fetched):
    texts = {core.normalize(t) for split in core.SPLITS for t in broad.broad_texts(split)}
    assert len(texts) >= 100_000
    sources = {row["_group"].split(":")[0] for rows in fetched["broad_neighbours"].values() for row in rows}
    assert {"jane_austen", "world_english_bible", "libreoffice_help", "postgresql_manual"} <= sources
    qa_sources = {row["_group"].split(":")[0] for rows in fetched["broad_qa"].values() for row in rows}
    assert {"debian_faq", "chat_qa", "django_docs"} <= qa_sources
    ids = [row["id"] for task in fetched.values() for rows in task.values() for row in rows]
    # manual-page sources (PostgreSQL's sql-*/app-* pages, django-admin) and glossaries are reserved
    assert not [i for i in ids if "/sql-" in i or ":sql-" in i or ":app-" in i or "django-admin" in i]
    assert not [i for i in ids if "gloss" in i.lower()]
    every_text = [
        row[c] for task in fetched.values() for rows in task.values() for row in rows for c in ("query", "passage")
    ]
    assert not [t for t in every_text if "World English Bible (WEB) are not very common" in t]  # the WEB's glossary
    paraphrases = fetched["broad_paraphrase"]
    assert len(paraphrases["train"]) > 20_000
    assert all(
        core.normalize(r["query"]) != core.normalize(r["passage"]) for rows in paraphrases.values() for r in rows
    )
    assert data.TASKS["broad_paraphrase"].instruction == ""  # plain rows: no prompt on either side
    evaluated = broad._evaluated_shingles(broad._info_dir())
    sample = [row["passage"] for rows in fetched["broad_neighbours"].values() for row in rows[:2000]]
    assert evaluated and not [p for p in sample if broad.shingles(p) & evaluated]
