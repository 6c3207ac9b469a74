"""Tests of train.data.beir on BEIR folders written in tmp (seconds, no network)."""

import json
import logging
import random

import pytest

from train.data import beir


CORPUS = [
    {"_id": "d1", "title": "gzip", "text": "compresses files"},
    {"_id": "d2", "title": "", "text": "ntp keeps clocks in sync"},
    {"_id": "d3", "title": "cron", "text": "runs jobs on a schedule"},
    {"_id": "d4", "title": "tar", "text": "bundles files"},
    {"_id": "d5", "title": "ssh", "text": "logs in to remote hosts"},
    {"_id": "d6", "title": "rsync", "text": "copies files between hosts"},
]
QUERIES = [{"_id": "q1", "text": "how to compress a file"}, {"_id": "q2", "text": "how to sync clocks"}]


def write_folder(folder, qrels: str, name: str = "train.tsv"):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in QUERIES))
    (folder / "qrels" / name).write_text(qrels)
    return folder


def test_qrels_join_into_query_positive_rows_with_unjudged_corpus_negatives(tmp_path):
    # q1: d1 relevant, d4 judged non-relevant (score 0); q2: d2 relevant.
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td4\t0\nq2\td2\t2\n"
    folder = write_folder(tmp_path / "set", qrels)
    pairs = beir.load_beir_pairs(folder, split="train", num_negatives=3, seed=0)
    assert pairs.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3", "task"]
    assert pairs["anchor"] == ["how to compress a file", "how to sync clocks"]
    assert pairs["positive"] == ["gzip compresses files", "ntp keeps clocks in sync"]  # title + text, no empty title
    for seed in range(20):  # never a judged document, whatever the draw
        rows = beir.load_beir_pairs(folder, num_negatives=3, seed=seed)
        first = {rows[f"negative_{i}"][0] for i in (1, 2, 3)}
        assert len(first) == 3 and not first & {"gzip compresses files", "tar bundles files"}
    assert pairs["task"] == ["set", "set"]
    assert beir.load_beir_pairs(folder, num_negatives=3, seed=0).to_dict() == pairs.to_dict()  # deterministic


def test_jsonl_qrels_without_negatives_and_limit(tmp_path):
    qrels = "".join(
        json.dumps({"query-id": q, "corpus-id": d, "score": 1}) + "\n" for q, d in [("q1", "d1"), ("q2", "d2")]
    )
    folder = write_folder(tmp_path / "set", qrels, "dev.jsonl")
    pairs = beir.load_beir_pairs(folder, split="dev", num_negatives=0, limit=1, task="t")
    assert pairs.to_dict() == {
        "anchor": ["how to compress a file"],
        "positive": ["gzip compresses files"],
        "task": ["t"],
    }


def test_missing_split_and_tables_are_named(tmp_path):
    folder = write_folder(tmp_path / "set", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(ValueError, match=r"no qrels for split 'dev'.*\['train.tsv'\]"):
        beir.load_beir_pairs(folder, split="dev")
    (folder / "queries.jsonl").unlink()
    with pytest.raises(ValueError, match="no queries.jsonl"):
        beir.load_beir_pairs(folder)
    with pytest.raises(FileNotFoundError, match="a path, not a Hub name"):
        beir.load_beir_pairs(tmp_path / "nowhere")


def test_dangling_qrels_are_counted_and_all_dangling_fails(tmp_path, caplog):
    folder = write_folder(tmp_path / "set", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\nq2\td99\t1\n")
    with caplog.at_level(logging.WARNING):
        pairs = beir.load_beir_pairs(folder, num_negatives=0)
    assert len(pairs) == 1 and "skipped 2 qrels" in caplog.text
    folder = write_folder(tmp_path / "bad", "query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(ValueError, match="no qrel scored >= 1 names a known query and document"):
        beir.load_beir_pairs(folder)


def test_too_small_a_corpus_for_the_negatives_is_refused():
    tables = beir.BeirTables({"d1": "a", "d2": "b"}, {"q1": "q"}, [("q1", "d1", 1.0)])
    with pytest.raises(ValueError, match="1 unjudged documents for a query, need 2"):
        beir.beir_pairs(tables, random.Random(0), num_negatives=2)
    with pytest.raises(ValueError, match="num_negatives must be >= 0"):
        beir.beir_pairs(tables, random.Random(0), num_negatives=-1)
