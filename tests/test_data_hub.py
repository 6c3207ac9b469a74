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
QA = {"kind": "retrieval", "columns": {"anchor": "question", "positive": "answer"}}


def test_dataset_saved_to_disk_loads_into_the_training_schema(tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(ROWS)}).save_to_disk(tmp_path / "dict")
    columns = {"anchor": "question", "positive": "answer", "negative_1": "hard"}
    spec = hub.hub_spec(tmp_path / "dict", kind="retrieval", columns=columns)
    pairs = hub.load_hub_pairs(tmp_path / "dict", spec=spec, task="qa")
    assert pairs.column_names == ["anchor", "positive", "negative_1", "task"]
    assert pairs["anchor"] == ROWS["question"] and pairs["positive"] == ROWS["answer"]
    assert pairs["negative_1"] == ROWS["hard"] and pairs["task"] == ["qa", "qa"]

    datasets.Dataset.from_dict(ROWS).save_to_disk(tmp_path / "single")
    spec = hub.hub_spec(tmp_path, kind="retrieval", columns={"anchor": "question", "positive": "answer"})
    single = hub.load_hub_pairs(tmp_path / "single", spec=spec, limit=1)
    expected = {"anchor": ["what does gzip do"], "positive": ["gzip compresses files"], "task": ["single"]}
    assert single.to_dict() == expected


def test_jsonl_folder_loads_and_swapped_columns_stay_correct(tmp_path):
    folder = tmp_path / "jsonl"
    folder.mkdir()
    datasets.Dataset.from_dict({"anchor": ["a1", "a2"], "positive": ["p1", "p2"]}).to_json(folder / "train.jsonl")
    spec = hub.hub_spec(folder, kind="retrieval", columns={"anchor": "positive", "positive": "anchor"})
    pairs = hub.load_hub_pairs(folder, spec=spec, task="swap")
    assert pairs.column_names == ["anchor", "positive", "task"]
    assert pairs["anchor"] == ["p1", "p2"] and pairs["positive"] == ["a1", "a2"]


def test_registered_name_supplies_the_column_mapping(tmp_path):
    spec = hub.hub_spec("sentence-transformers/natural-questions")
    assert spec.kind == "retrieval" and spec.columns == {"anchor": "query", "positive": "answer"}
    assert hub.hub_spec(tmp_path, hub_name="sentence-transformers/natural-questions") == spec
    with pytest.raises(ValueError, match="give kind and columns, or hub_name"):
        hub.load_hub_pairs(tmp_path)
    with pytest.raises(ValueError, match=r"need the keys \['text', 'label'\]"):
        hub.hub_spec(tmp_path, kind="classification", columns={"anchor": "q", "positive": "p"})


def test_missing_column_error_names_it_and_lists_the_columns(tmp_path):
    datasets.Dataset.from_dict(ROWS).save_to_disk(tmp_path / "d")
    spec = hub.hub_spec(tmp_path, kind="retrieval", columns={"anchor": "query", "positive": "answer"})
    with pytest.raises(ValueError, match=r"no column 'query'.*\['question', 'answer', 'hard', 'extra'\]"):
        hub.load_hub_pairs(tmp_path / "d", spec=spec)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(ROWS)}).save_to_disk(tmp_path / "dd")
    with pytest.raises(ValueError, match="no split 'dev'"):
        hub.load_hub_pairs(tmp_path / "dd", split="dev", spec=hub.hub_spec(tmp_path / "d", **QA))


def test_hub_name_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(hub.HubUnavailableError, match=r"HF_HUB_OFFLINE=1.*save_to_disk"):
        hub.load_hub_pairs("nvembed-tests/no-such-dataset", spec=hub.hub_spec("x", **QA))
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


def test_sts_scores_are_rescaled_to_the_built_in_scale(tmp_path):
    # sentence-transformers/stsb publishes scores in [0, 1]; the STS rule keeps pairs scored >= 4 of 5.
    rows = {
        "sentence1": ["a cat sits", "a cat sits", "dogs bark", "dogs bark", "rain falls"],
        "sentence2": ["a cat is sitting", "stocks fell", "a dog barks", "the sun", "it is raining"],
        "score": [0.9, 0.1, 0.85, 0.05, 0.5],
    }
    datasets.Dataset.from_dict(rows).to_json(tmp_path / "stsb.jsonl")
    columns = {"sentence1": "sentence1", "sentence2": "sentence2", "score": "score"}
    unit = hub.hub_spec(tmp_path, kind="sts", columns=columns, max_score=1.0)
    pairs = hub.load_hub_pairs(tmp_path / "stsb.jsonl", spec=unit, task="stsb")
    assert pairs["anchor"] == ["a cat sits", "dogs bark"] and pairs["positive"] == ["a cat is sitting", "a dog barks"]
    assert pairs["negative_1"] == ["stocks fell", "the sun"]  # the partner scored <= 1 of 5
    as_if_0_to_5 = hub.load_hub_pairs(
        tmp_path / "stsb.jsonl", spec=hub.hub_spec(tmp_path, kind="sts", columns=columns)
    )
    assert len(as_if_0_to_5) == 0  # read on the 0-5 scale, no pair is similar enough


def test_classification_rows_get_one_negative_per_other_label_when_asked(tmp_path):
    rows = {
        "text": [f"{label} text {i}" for label in "abc" for i in range(3)],
        "label": [c for c in "abc" for _ in range(3)],
    }
    datasets.Dataset.from_dict(rows).to_json(tmp_path / "topics.jsonl")
    spec = hub.hub_spec(tmp_path, kind="classification", columns={"text": "text", "label": "label"})
    pairs = hub.load_hub_pairs(tmp_path / "topics.jsonl", spec=spec, task="topics", num_negatives=2)
    assert pairs.column_names == ["anchor", "positive", "negative_1", "negative_2", "task"]
    for row in pairs:
        labels = [row[column][0] for column in ("anchor", "negative_1", "negative_2")]
        assert len(set(labels)) == 3 and row["positive"][0] == row["anchor"][0]


def test_path_like_names_never_go_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "_load_hub", lambda *args: pytest.fail("a path was looked up on the Hub"))
    for name in (str(tmp_path / "nq"), "./nq", "data/nq/train.jsonl", "nq.parquet"):
        with pytest.raises(FileNotFoundError, match="a path, not a Hub name"):
            hub.load_hub_pairs(name, spec=hub.hub_spec("x", **QA))
    assert not hub.looks_like_path("sentence-transformers/natural-questions") and not hub.looks_like_path("squad")
