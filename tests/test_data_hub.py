"""Tests of train.data.hub on datasets saved in tmp (seconds, no network: the Hub is never reached)."""

import time

import datasets
import pytest

from train.data import hub


ROWS = {
    "question": ["what does gzip do", "how to sync clocks"],
    "answer": ["gzip compresses files", "ntp keeps clocks in sync"],
    "hard": ["tar bundles files", "cron runs jobs"],
    "extra": [1, 2],
}


def test_dataset_saved_to_disk_loads_into_the_training_schema(tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(ROWS)}).save_to_disk(tmp_path / "dict")
    pairs = hub.load_hub_pairs(
        tmp_path / "dict", anchor_column="question", positive_column="answer", negative_columns=["hard"], task="qa"
    )
    assert pairs.column_names == ["anchor", "positive", "negative_1", "task"]
    assert pairs["anchor"] == ROWS["question"] and pairs["positive"] == ROWS["answer"]
    assert pairs["negative_1"] == ROWS["hard"] and pairs["task"] == ["qa", "qa"]

    datasets.Dataset.from_dict(ROWS).save_to_disk(tmp_path / "single")
    single = hub.load_hub_pairs(tmp_path / "single", anchor_column="question", positive_column="answer", limit=1)
    expected = {"anchor": ["what does gzip do"], "positive": ["gzip compresses files"], "task": ["single"]}
    assert single.to_dict() == expected


def test_jsonl_folder_loads_and_swapped_columns_stay_correct(tmp_path):
    folder = tmp_path / "jsonl"
    folder.mkdir()
    datasets.Dataset.from_dict({"anchor": ["a1", "a2"], "positive": ["p1", "p2"]}).to_json(folder / "train.jsonl")
    pairs = hub.load_hub_pairs(folder, anchor_column="positive", positive_column="anchor", task="swap")
    assert pairs["anchor"] == ["p1", "p2"] and pairs["positive"] == ["a1", "a2"]


def test_registered_name_supplies_the_column_mapping(tmp_path):
    spec = hub.HUB_DATASETS["sentence-transformers/natural-questions"]
    assert (spec.anchor_column, spec.positive_column) == ("query", "answer")
    with pytest.raises(ValueError, match="pass anchor_column and positive_column"):
        hub.load_hub_pairs(tmp_path)


def test_missing_column_error_names_it_and_lists_the_columns(tmp_path):
    datasets.Dataset.from_dict(ROWS).save_to_disk(tmp_path / "d")
    with pytest.raises(ValueError, match=r"no column 'query'.*\['question', 'answer', 'hard', 'extra'\]"):
        hub.load_hub_pairs(tmp_path / "d", anchor_column="query", positive_column="answer")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(ROWS)}).save_to_disk(tmp_path / "dd")
    with pytest.raises(ValueError, match="no split 'dev'"):
        hub.load_hub_pairs(tmp_path / "dd", split="dev", anchor_column="question", positive_column="answer")


def test_hub_name_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(hub.HubUnavailableError, match=r"HF_HUB_OFFLINE=1.*save_to_disk"):
        hub.load_hub_pairs("nvembed-tests/no-such-dataset", anchor_column="q", positive_column="p")
    assert time.monotonic() - start < 5


def test_unreachable_hub_fails_fast_instead_of_retrying(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port on loopback: refused at once

    def fail(*args, **kwargs):
        raise AssertionError("load_dataset called although the Hub is unreachable")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    start = time.monotonic()
    with pytest.raises(hub.HubUnavailableError, match=r"127\.0\.0\.1:9 unreachable.*HF_HUB_OFFLINE=1"):
        hub.load_hub_pairs("sentence-transformers/natural-questions")
    assert time.monotonic() - start < 5
