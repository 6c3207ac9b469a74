"""Tests of train.data on small synthetic apt lists and a synthetic stdlib folder (seconds, no network)."""

import dataclasses
import hashlib
import random
import shutil
import subprocess

import pytest

import train.data as data
from train.data import SourceNotFoundError, core, debian, stdlib_docs, usr_doc


SECTIONS = ("games", "science", "utils")
FAMILIES = ("alpha", "beta", "gamma")
WORDS = "fast small secure graphical network audio image text parser server client library viewer editor".split()


def _debian_stanzas(n_packages=600, seed=0):
    """Returns (Packages text, Translation-en text) for synthetic packages.

    Packages come in clusters of four with one tag set, so Jaccard scores reach 5; every fifth source builds two
    binaries that share a long description (dedup must drop one), and one package is an exact copy of another.
    """
    rng = random.Random(seed)
    packages, translations = [], []
    for i in range(n_packages):
        source = f"src{i - 1 if i % 5 == 1 else i}"
        cluster = i // 4
        tags = ", ".join(f"use::t{cluster}-{k}" for k in range(3)) + ", role::program"
        short = f"{rng.choice(WORDS)} {rng.choice(WORDS)} tool number {i}"
        body_id = i - 1 if i % 5 == 1 else i  # the second binary of a source copies the first one's description
        long_lines = [
            f" Tool {body_id} is a {WORDS[body_id % len(WORDS)]} program for the {SECTIONS[body_id % 3]} section,",
            f" written to test parsing of long descriptions; it handles case {body_id}.",
            " .",
            f"  verbatim line {body_id}",
        ]
        md5 = hashlib.md5(f"{short}{body_id}".encode()).hexdigest()
        packages.append(
            f"Package: pkg{i}\nSource: {source} (1.0-1)\nVersion: 1.0-1\nSection: {SECTIONS[i % 3]}\n"
            f"Description: {short}\nDescription-md5: {md5}\nTag: {tags}\n"
        )
        header = f"Package: pkg{i}\nDescription-md5: {md5}\nDescription-en: {short}\n"
        translations.append(header + "\n".join(long_lines))
    packages.append(packages[7].replace("Package: pkg7", "Package: pkg7-copy"))  # exact duplicate text
    translations.append(translations[7].replace("Package: pkg7", "Package: pkg7-copy"))
    return "\n\n".join(packages) + "\n", "\n\n".join(translations) + "\n"


def _write_stdlib(root):
    for f, family in enumerate(FAMILIES):
        for m in range(30):
            folder = root / family
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"mod{m}.py").write_text(
                f'"""The {family} module number {m} of the suite.\n\n'
                f'It holds helpers for case {f}-{m} and nothing more than those."""\n\n'
                f"def compute_{m}(x, y=1):\n"
                f'    """Compute the {family} value of item {m}.\n\n'
                f'    Uses x and y to find value {f}-{m} by a simple sum of both.\n    """\n\n'
                f"class Thing{m}:\n"
                f'    """A {family} thing with number {m}.\n\n'
                f'    Holds state {f}-{m} for the tests and nothing else at all.\n    """\n\n'
                f"    def run(self):\n"
                f'        """Run the {family} thing {m} once.\n\n'
                f'        Runs step {f}-{m} and returns nothing to the caller at all.\n        """\n'
            )
    (root / "alpha" / "__init__.py").write_text('"""Alpha package."""\n')
    # Copied docstring in another module: dedup must keep one.
    (root / "beta" / "copy.py").write_text((root / "alpha" / "mod3.py").read_text())
    for excluded in ("test", "idlelib"):
        (root / excluded).mkdir()
        (root / excluded / "leak.py").write_text('def leak():\n    """Excluded docstring here.\n\n    Body."""\n')


INFO_PARAGRAPH = (
    "The manual explains how the stream editor reads its input one line at a time, applies every command of the "
    "script in turn and then prints the pattern space before it moves on to the next line of the input."
)


def _prose(package, k):
    """A prose paragraph of ``package`` (24 plain words, unique to the pair)."""
    return (
        f"The package {package} keeps its notes in paragraph {k}, which tells the reader how the program "
        f"behaves when it starts, what it reads first and where variant {package}-{k} writes its results."
    )


def _write_docs(doc_dir, info_dir):
    """Synthetic /usr/share/doc and /usr/share/info: 80 packages with a README of six prose paragraphs, a code
    block and a list of names between them; a reserved package, a package named after an Info manual, a package
    that copies the manual's text, and Debian boilerplate, all of which doc_paragraphs must leave out."""
    info_dir.mkdir(parents=True)
    (info_dir / "sed.info").write_text(f"File: sed.info\n\n{INFO_PARAGRAPH}\n")
    for i in range(80):
        package = f"doc{i}"
        (doc_dir / package).mkdir(parents=True)
        blocks = [_prose(package, k) for k in range(6)]
        blocks.insert(2, "    ./configure --prefix=/usr && make && make install # build it: 1.2.3 /usr/lib")
        blocks.insert(4, "alpha beta gamma")  # too short to be prose
        (doc_dir / package / "README.md").write_text("\n\n".join(blocks) + "\n")
        (doc_dir / package / "copyright").write_text(_prose(f"{package}-copyright", 0) + "\n")
    for package in ("python3.11-doc", "fortune-mod", "sed"):
        (doc_dir / package).mkdir()
        (doc_dir / package / "README").write_text("\n\n".join(_prose(package, k) for k in range(4)))
    (doc_dir / "copier").mkdir()
    (doc_dir / "copier" / "README").write_text(f"{INFO_PARAGRAPH}\n\n{_prose('copier', 1)}\n")


# The tasks built here from synthetic sources; the broad_* tasks read fetched packages (tests/test_data_broad.py).
SYNTHETIC_TASKS = sorted(name for name in data.TASKS if not name.startswith("broad_"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    lists_dir = tmp_path_factory.mktemp("lists")
    packages, translations = _debian_stanzas()
    (lists_dir / "deb.example_dists_x_main_binary-amd64_Packages").write_text(packages)
    (lists_dir / "deb.example_dists_x_main_i18n_Translation-en").write_text(translations)
    stdlib = tmp_path_factory.mktemp("stdlib")
    _write_stdlib(stdlib)
    docs = tmp_path_factory.mktemp("docs")
    _write_docs(docs / "doc", docs / "info")
    return {
        "NVEMBED_APT_LISTS_DIR": str(lists_dir),
        "NVEMBED_STDLIB_DIR": str(stdlib),
        "NVEMBED_DOC_DIR": str(docs / "doc"),
        "NVEMBED_INFO_DIR": str(docs / "info"),
    }


@pytest.fixture
def synthetic(sources, monkeypatch, tmp_path):
    for key, value in sources.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NVEMBED_DATA_DIR", str(tmp_path / "cache"))
    return sources


def _texts(rows, kind):
    return {core.normalize(row[column]) for row in rows for column in data.TEXT_COLUMNS[kind]}


@pytest.mark.parametrize("name", SYNTHETIC_TASKS)
def test_dev_and_test_share_no_group_or_text_with_train(synthetic, name):
    spec = data.TASKS[name]
    splits = spec.builder()
    assert all(splits[split] for split in core.SPLITS), {split: len(rows) for split, rows in splits.items()}
    train_groups = {row[key] for row in splits["train"] for key in ("_group", "_group2") if key in row}
    for split in ("dev", "test"):
        groups = {row[key] for row in splits[split] for key in ("_group", "_group2") if key in row}
        assert not groups & train_groups
        assert not _texts(splits[split], spec.kind) & _texts(splits["train"], spec.kind)
        assert all(core.split_of(group) == split for group in groups)


def test_tasks_of_one_source_agree_on_the_split_of_a_group(synthetic):
    splits_by_task = [data.TASKS[name].builder() for name in ("debian_description", "debian_section")]
    split_of_group = {}
    for splits in splits_by_task:
        for split, rows in splits.items():
            for row in rows:
                assert split_of_group.setdefault(row["_group"], split) == split


def test_split_hash_is_sha256_based_and_stable():
    # Fixed expectations: Python's hash() is salted per process and would change these.
    assert [core.split_of(g) for g in ("bash", "coreutils", "email.mime.text")] == ["train", "test", "dev"]
    buckets = [core.split_of(f"group{i}") for i in range(10_000)]
    assert 0.77 < buckets.count("train") / len(buckets) < 0.83


@pytest.mark.parametrize("name", SYNTHETIC_TASKS)
def test_splits_are_identical_across_two_builds(synthetic, name):
    first = data.build_task(name)
    debian._load_cached.cache_clear()
    stdlib_docs._load_cached.cache_clear()
    second = data.build_task(name)
    for split in core.SPLITS:
        assert first[split].to_dict() == second[split].to_dict()


def test_dedup_drops_repeated_texts_and_identical_query_passage():
    rows = [
        {"query": "a b", "passage": "long text one"},
        {"query": "A  b", "passage": "another text"},  # same query after normalization
        {"query": "c", "passage": "Long text one"},  # same passage after normalization
        {"query": "same", "passage": "same"},  # query equals passage
        {"query": "d", "passage": "text four"},
    ]
    kept = core.dedup_rows(rows, ("query", "passage"))
    assert [row["query"] for row in kept] == ["a b", "d"]


def test_built_tasks_hold_no_duplicate_texts(synthetic):
    retrieval = data.build_task("debian_description")
    passages = [p for split in core.SPLITS for p in retrieval[split]["passage"]]
    assert len(passages) == len(set(passages))
    queries = [q for split in core.SPLITS for q in retrieval[split]["query"]]
    assert sum(q.endswith(" tool number 7") for q in queries) <= 1  # pkg7 and its exact copy pkg7-copy
    ids = {i for split in core.SPLITS for i in retrieval[split]["id"]}
    assert "debian:pkg1" not in ids  # same long description as pkg0, its sibling binary
    clustering = data.build_task("pydoc_module")
    texts = [t for split in core.SPLITS for t in clustering[split]["text"]]
    assert len(texts) == len(set(texts))


def test_doc_paragraphs_pair_neighbouring_prose_and_leave_out_evaluation_text(synthetic):
    splits = usr_doc.build_doc_paragraphs()
    rows = [row for split in core.SPLITS for row in splits[split]]
    # 80 packages x 6 prose paragraphs -> pairs (0, 1), (2, 3), (4, 5); the code block and the short list between
    # them are not prose and do not break the pairing.
    assert len(rows) == 80 * 3
    for row in rows:
        package, k = row["_group"], int(row["id"].rsplit(":", 1)[1])
        assert row["query"] == _prose(package, k) and row["passage"] == _prose(package, k + 1)
    # reserved (python docs, fortunes), an Info manual's own package, and copier: its copy of the manual's text is
    # dropped by the shingle filter, which leaves its other paragraph without a neighbour
    packages = {row["_group"] for row in rows}
    assert not packages & {"python3.11-doc", "fortune-mod", "sed", "copier"}
    texts = {t for row in rows for t in (row["query"], row["passage"])}
    assert INFO_PARAGRAPH not in texts and not any("copyright" in t for t in texts)
    assert data.TASKS["doc_paragraphs"].evaluate is False


def test_doc_paragraphs_without_documentation_name_the_folder(tmp_path):
    with pytest.raises(SourceNotFoundError, match="path-exclude"):
        usr_doc.build_doc_paragraphs(doc_dir=tmp_path / "none", info_dir=tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "README").write_text("short\n\nlines\n")
    with pytest.raises(SourceNotFoundError, match=str(tmp_path)):
        usr_doc.build_doc_paragraphs(doc_dir=tmp_path, info_dir=tmp_path / "none")


def test_excluded_stdlib_folders_are_not_parsed(synthetic):
    items = stdlib_docs.load_docstrings()
    assert items and not any(item.module.split(".")[0] in ("test", "idlelib") for item in items)


def test_columns_follow_the_task_kind(synthetic):
    expected = {
        "retrieval": ["id", "query", "passage"],
        "classification": ["text", "label"],
        "clustering": ["text", "label"],
        "sts": ["sentence1", "sentence2", "score"],
    }
    for name in SYNTHETIC_TASKS:
        spec = data.TASKS[name]
        built = data.load_source(name)
        assert set(built) == {"train", "dev", "test"}
        assert built["train"].column_names == expected[spec.kind]
        if spec.kind == "sts":
            assert all(0.0 <= score <= 5.0 for score in built["train"]["score"])


def test_unknown_task_raises_value_error_listing_valid_names():
    with pytest.raises(ValueError, match="debian_description"):
        data.load_source("no_such_task")
    with pytest.raises(ValueError, match="pydoc_summary"):
        data.training_pairs("no_such_task")


def test_missing_apt_lists_raise_error_naming_apt_get_update(tmp_path, monkeypatch):
    with pytest.raises(SourceNotFoundError, match="apt-get update"):
        debian.load_debian_packages(tmp_path)
    monkeypatch.setenv("NVEMBED_APT_LISTS_DIR", str(tmp_path))
    with pytest.raises(SourceNotFoundError, match=r"_Packages.*apt-get update"):
        data.load_source("debian_section", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "debian_section-v1").exists()


def test_missing_translation_index_names_acquire_languages(tmp_path):
    (tmp_path / "x_main_binary-amd64_Packages").write_text("Package: a\nDescription: b\n")
    with pytest.raises(SourceNotFoundError, match="Translation-en.*Acquire::Languages=en"):
        debian.load_debian_packages(tmp_path)


def test_missing_stdlib_raises_clear_error(tmp_path):
    with pytest.raises(SourceNotFoundError, match="NVEMBED_STDLIB_DIR"):
        stdlib_docs.load_docstrings(tmp_path)


def test_second_load_comes_from_cache(synthetic, tmp_path, monkeypatch):
    first = data.load_source("debian_section", cache_dir=tmp_path)
    assert (tmp_path / "debian_section-v1" / "dataset_dict.json").exists()

    def fail():
        raise AssertionError("builder called although the cache holds the task")

    monkeypatch.setitem(data.TASKS, "debian_section", dataclasses.replace(data.TASKS["debian_section"], builder=fail))
    second = data.load_source("debian_section", cache_dir=tmp_path)
    assert second["dev"].to_dict() == first["dev"].to_dict()
    with pytest.raises(AssertionError, match="builder called"):
        data.load_source("debian_section", cache_dir=tmp_path, rebuild=True)


@pytest.mark.parametrize("name", ["debian_section", "pydoc_module"])
def test_example_pairs_never_pair_an_example_with_itself_and_negatives_have_another_label(synthetic, name):
    labels = {}
    for row in data.load_source(name)["train"]:
        labels[row["text"]] = row["label"]
    pairs = data.training_pairs(name)
    assert pairs.column_names == ["anchor", "positive", "negative_1", "task"]
    assert len(pairs) > 0 and set(pairs["task"]) == {name}
    for row in pairs:
        assert row["anchor"] != row["positive"]
        assert labels[row["anchor"]] == labels[row["positive"]]
        assert labels[row["negative_1"]] != labels[row["anchor"]]
    assert data.training_pairs(name).to_dict() == pairs.to_dict()  # same seed, same rows


def test_label_negatives_come_from_distinct_other_labels_and_one_keeps_the_old_rows(synthetic):
    labels = {row["text"]: row["label"] for row in data.load_source("debian_section")["train"]}
    assert len(set(labels.values())) == 3  # the fixture's sections: two negatives is the most there can be
    pairs = data.training_pairs("debian_section", num_negatives=2)
    assert pairs.column_names == ["anchor", "positive", "negative_1", "negative_2", "task"]
    for row in pairs:
        negative_labels = [labels[row[f"negative_{i}"]] for i in (1, 2)]
        assert labels[row["anchor"]] not in negative_labels
        assert len(set(negative_labels)) == 2  # one per label: two classes to tell apart, not one twice
    one = data.training_pairs("debian_section", num_negatives=1)
    assert one.to_dict() == data.training_pairs("debian_section").to_dict()
    with pytest.raises(ValueError, match="need 4 labels; the data has 3"):
        data.training_pairs("debian_section", num_negatives=3)


def test_retrieval_pairs_map_query_to_passage(synthetic):
    source = data.load_source("pydoc_summary")["train"]
    pairs = data.training_pairs("pydoc_summary")
    assert pairs.column_names == ["anchor", "positive", "task"]
    assert pairs["anchor"] == source["query"] and pairs["positive"] == source["passage"]


def test_sts_pairs_keep_high_scores_with_low_scored_negatives(synthetic):
    source = data.load_source("debian_tags_pairs")["train"]
    score = {(r["sentence1"], r["sentence2"]): r["score"] for r in source}
    score.update({(b, a): s for (a, b), s in list(score.items())})
    pairs = data.training_pairs("debian_tags_pairs")
    assert len(pairs) > 0
    for row in pairs:
        assert score[(row["anchor"], row["positive"])] >= 4.0
        assert score.get((row["anchor"], row["negative_1"]), 0.0) <= 1.0


def test_jaccard_score_spans_zero_to_five():
    a, b = frozenset({"use::x", "use::y"}), frozenset({"use::y", "use::z"})
    assert debian.jaccard_score(a, a) == 5.0
    assert debian.jaccard_score(a, b) == pytest.approx(5 / 3, abs=0.01)
    assert debian.jaccard_score(a, frozenset({"use::w"})) == 0.0


def test_long_description_keeps_paragraphs_and_verbatim_lines():
    raw = " First line\n wrapped  here.\n .\n Second paragraph.\n  verbatim   code"
    assert debian.format_long_description(raw) == "First line wrapped here.\n\nSecond paragraph.\nverbatim   code"


def test_docstring_needs_a_short_summary_and_a_body():
    assert stdlib_docs.split_docstring("Return the sum of x and y.\n\nBody text.") == (
        "Return the sum of x and y.",
        "Body text.",
    )
    assert stdlib_docs.split_docstring("Only one line here.") is None
    assert stdlib_docs.split_docstring("foo(a, b) -> int\n\nC-style signature line.") is None
    assert stdlib_docs.split_docstring("email.utils\n\nA title, not a summary.") is None


@pytest.mark.skipif(not shutil.which("lz4"), reason="needs the lz4 command to compress the fixture")
def test_lz4_indexes_are_read_without_python_packages(tmp_path):
    plain = tmp_path / "x_Packages"
    plain.write_text("Package: a\nDescription: b\n")
    subprocess.run(["lz4", "-q", str(plain), str(plain) + ".lz4"], check=True)
    assert debian.read_index(str(plain) + ".lz4") == plain.read_text()
