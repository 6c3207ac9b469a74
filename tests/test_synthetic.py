"""Tests of train.data.synthetic: the query filter on hand-made cases, generation + cache with a tiny random LM
(seconds), and one `slow` test with the real SmolLM2-135M-Instruct."""

import datasets
import pytest

from train.data import synthetic
from train.data.synthetic import QueryFilter, QueryGenerationConfig


PASSAGE = (
    "GNU Wget is a free utility for non-interactive download of files from the Web. It supports HTTP, HTTPS and "
    "FTP protocols, as well as retrieval through HTTP proxies."
)
PROMPT = QueryGenerationConfig().instruction_text()
PASSAGES = [
    PASSAGE,
    "The ntp daemon keeps the system clock in sync with time servers on the network, correcting drift over time.",
    "This module provides regular expression matching operations similar to those found in Perl.",
    "A terminal based file manager with two panels, a built-in viewer and an editor for text files.",
    "Tools to read, write and convert images in many formats, including PNG, JPEG, GIF and TIFF.",
]


@pytest.mark.parametrize(
    "query, reason",
    [
        ("download files from the web without interaction", None),  # a good query is kept
        ("", "empty"),
        ("wget", "too_short"),
        (" ".join(["download"] + [f"word{i}" for i in range(30)]), "too_long"),
        ("wget §§§ ### 123 456 %%%", "garbage"),  # few letters
        ("download <|im_end|> files", "garbage"),  # special-token residue
        ("files files files files files files", "garbage"),  # degenerate loop
        ("download\x15 files from web", "garbage"),  # control character
        ("Here is a query about downloads", "echo"),
        ("Write a search query for wget", "echo"),
        ("how to compress files with gzip", "echo"),  # the few-shot example's query, not this passage's
        ("how to read, write and convert wget logs", None),  # "write and" is not the marker "write a"
        ("how to debug code with this library", "echo"),  # points at the unseen passage
        ("GNU Wget is a free utility for non-interactive download", "copy"),  # verbatim span
        ("wget is a free utility for non-interactive download of web files", "copy"),  # near-copy by trigrams
    ],
)
def test_filter_drops_each_bad_kind_and_keeps_a_good_query(query, reason):
    assert QueryFilter().reason(query, PASSAGE, PROMPT) == reason


def test_clean_query_strips_labels_quotes_and_later_lines():
    assert synthetic.clean_query('\n Search query: "wget recursive download"\nand more') == "wget recursive download"
    assert synthetic.clean_query("**ntp clock sync**") == "ntp clock sync"


def test_bad_filter_and_config_values_raise():
    with pytest.raises(ValueError, match="min <= max"):
        QueryFilter(min_words=5, max_words=2)
    with pytest.raises(ValueError, match="max_copy_overlap"):
        QueryFilter(max_copy_overlap=1.5)
    with pytest.raises(ValueError, match=r"\{passage\}"):
        QueryGenerationConfig(prompt="no placeholder")


class _Scorer:
    """Embeds a text as word counts over a fixed vocabulary: enough to test ranking without a model."""

    vocab = ["wget", "download", "clock", "regex", "images"]

    def encode(self, texts, convert_to_tensor, normalize_embeddings):
        import torch

        rows = [[text.lower().count(word) + 1e-3 for word in self.vocab] for text in texts]
        return torch.nn.functional.normalize(torch.tensor(rows), dim=-1)


def test_round_trip_drops_queries_that_do_not_retrieve_their_passage():
    raw = datasets.Dataset.from_dict(
        {
            "id": ["wget", "ntp"],
            "passage": PASSAGES[:2],
            "query": ["wget download tool options", "download manager for linux"],  # the second points at wget
        }
    )
    result = synthetic.filter_queries(raw, prompt=PROMPT, scorer=_Scorer(), top_k=1)
    assert result.kept["id"] == ["wget"]
    assert result.dropped["reason"] == ["round_trip"]
    assert result.kept.column_names == ["id", "query", "passage"]


@pytest.fixture
def counted_generate(monkeypatch):
    calls = []
    original = synthetic.generate_queries

    def counting(passages, *args, **kwargs):
        calls.append(len(passages))
        return original(passages, *args, **kwargs)

    monkeypatch.setattr(synthetic, "generate_queries", counting)
    return calls


def test_tiny_lm_generates_once_then_reads_the_cache_and_its_garbage_is_dropped(
    tiny_causal_lm, counted_generate, tmp_path
):
    config = QueryGenerationConfig(max_new_tokens=8, batch_size=2)
    ids = [f"p{i}" for i in range(len(PASSAGES))]

    def generate(config):
        return synthetic.generate_cached(
            ids, PASSAGES, name="t", model=tiny_causal_lm, config=config, cache_dir=tmp_path
        )

    first = generate(config)
    assert counted_generate == [len(PASSAGES)]
    assert first["id"] == ids and all(text for text in first["raw"])  # something was generated for every passage
    second = generate(config)
    assert counted_generate == [len(PASSAGES)]  # served from the cache
    assert second.to_dict() == first.to_dict()
    other = QueryGenerationConfig(max_new_tokens=8, batch_size=2, system="You write questions.")
    generate(other)
    assert len(counted_generate) == 2  # a different prompt is a different cache entry

    result = synthetic.filter_queries(first, prompt=config.instruction_text())
    assert len(result.kept) == 0 and len(result.dropped) == len(PASSAGES)  # random weights write garbage


def test_synthesize_reads_task_passages_and_pairs_carry_the_synthetic_task(tiny_causal_lm, tmp_path, monkeypatch):
    source = datasets.Dataset.from_dict({"id": ["a", "b", "c"], "query": ["q1", "q2", "q3"], "passage": PASSAGES[:3]})
    monkeypatch.setattr(synthetic, "load_source", lambda task, cache_dir=None: {"train": source})
    written = ["Query: wget download from the web", "sure, here is a query", "python regex match operations"]
    monkeypatch.setattr(synthetic, "generate_queries", lambda passages, *args: written[: len(passages)])
    result = synthetic.synthesize("debian_description", limit=3, model=tiny_causal_lm, cache_dir=tmp_path)
    assert result.counts() == {"kept": 2, "echo": 1}
    pairs = synthetic.synthetic_pairs("debian_description", limit=3, model=tiny_causal_lm, cache_dir=tmp_path)
    assert pairs.to_dict() == {
        "anchor": ["wget download from the web", "python regex match operations"],
        "positive": [PASSAGES[0], PASSAGES[2]],
        "task": ["synthetic_debian_description"] * 2,
    }
    with pytest.raises(ValueError, match="sts"):
        synthetic.task_passages("debian_tags_pairs")


@pytest.mark.slow
def test_smollm2_writes_at_least_one_kept_text_query(tmp_path):
    ids = [f"p{i}" for i in range(len(PASSAGES))]
    raw = synthetic.generate_cached(ids, PASSAGES, name="slow", cache_dir=tmp_path)
    result = synthetic.filter_queries(raw, prompt=QueryGenerationConfig().instruction_text())
    for row in raw:
        print(f"{row['passage'][:50]!r} -> {row['query']!r}")
    print(result.counts())
    assert len(result.kept) >= 1
    for query in result.kept["query"]:
        words = query.split()
        assert 2 <= len(words) <= 24 and sum(c.isalpha() for c in query) > 0.6 * len(query.replace(" ", ""))
