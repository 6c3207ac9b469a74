"""Tests of train.data.hub on datasets saved in tmp (seconds, no network: the Hub is never reached)."""

import time
from pathlib import Path

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


# Fixtures generated from each HUB_DATASETS entry's recorded card features, so a fixture cannot drift from the card:
# a mapping that names a column the card does not list fails to load its own fixture.
CARD_DTYPES = {
    "string": datasets.Value("string"),
    "int64": datasets.Value("int64"),
    "float64": datasets.Value("float64"),
    "list<string>": datasets.List(datasets.Value("string")),
}
FIXTURE_ROWS = 12


def card_fixture(spec: hub.HubDatasetSpec, rows: int = FIXTURE_ROWS) -> datasets.Dataset:
    """Rows with exactly the card's columns and dtypes; the mapped label/score columns get values that pair up."""
    features = datasets.Features({column: CARD_DTYPES[dtype] for column, dtype in spec.card.features.items()})
    label = spec.columns.get("label")
    score = spec.columns.get("score")
    first = spec.columns.get("sentence1")
    columns = {}
    for column, dtype in spec.card.features.items():
        if column == score:  # pairs of one sentence1: a partner scored at the top, one at the bottom of the scale
            columns[column] = [spec.max_score if i % 2 == 0 else spec.min_score for i in range(rows)]
        elif column == first:
            columns[column] = [f"{column} {i // 2}" for i in range(rows)]
        elif dtype == "list<string>":  # mteb clustering: one row holds a list of texts and their labels
            values = (lambda i, j: f"topic {j % 3}") if column == label else (lambda i, j: f"{column} {i}.{j}")
            columns[column] = [[values(i, j) for j in range(6)] for i in range(rows)]
        elif column == label:
            columns[column] = [i % 3 if dtype == "int64" else f"label {i % 3}" for i in range(rows)]
        else:
            columns[column] = [
                i if dtype == "int64" else float(i) if dtype == "float64" else f"{column} {i}" for i in range(rows)
            ]
    return datasets.Dataset.from_dict(columns, features=features)


def write_beir_fixture(folder, rows: int = FIXTURE_ROWS) -> None:
    (folder / "qrels").mkdir(parents=True)
    datasets.Dataset.from_dict(
        {
            "_id": [f"d{i}" for i in range(3 * rows)],
            "title": [f"title {i}" for i in range(3 * rows)],
            "text": [f"document {i}" for i in range(3 * rows)],
        }
    ).to_json(folder / "corpus.jsonl")
    datasets.Dataset.from_dict(
        {"_id": [f"q{i}" for i in range(rows)], "text": [f"query {i}" for i in range(rows)]}
    ).to_json(folder / "queries.jsonl")
    qrels = {
        "query-id": [f"q{i}" for i in range(rows)],
        "corpus-id": [f"d{i}" for i in range(rows)],
        "score": [1.0] * rows,
    }
    datasets.Dataset.from_dict(qrels).to_json(folder / "qrels" / "train.jsonl")


@pytest.mark.parametrize("name", sorted(hub.HUB_DATASETS))
def test_every_entry_records_its_card_and_maps_only_card_columns(name):
    spec = hub.HUB_DATASETS[name]
    card = spec.card
    assert card is not None and card.url == f"https://huggingface.co/datasets/{name}"
    assert set(card.features) and set(card.features.values()) <= set(CARD_DTYPES)
    assert set(spec.columns.values()) <= set(card.features), f"{name} maps a column its card does not list"
    if card.verified:
        assert card.revision is None or len(card.revision) == 40, "a recorded revision is a full commit hash"
    else:
        assert card.note, "an unverified entry says what was (not) found"
    assert (name in hub.unverified_datasets()) != card.verified


@pytest.mark.parametrize("name", sorted(hub.HUB_DATASETS))
def test_every_entry_loads_its_card_fixture(tmp_path, name):
    spec = hub.hub_spec(tmp_path / "copy", hub_name=name)
    assert spec == hub.HUB_DATASETS[name]  # a local copy named by hub_name gets the whole registered mapping
    if spec.layout == "beir":
        write_beir_fixture(tmp_path / "copy")
        pairs = hub.load_hub_pairs(tmp_path / "copy", spec=spec, task="t")
        assert pairs["anchor"][0] == "query 0" and pairs["positive"][0] == "title 0 document 0"
        assert pairs.column_names == ["anchor", "positive", "negative_1", "task"]
        return
    fixture = card_fixture(spec)
    datasets.DatasetDict({"train": fixture}).save_to_disk(tmp_path / "copy")
    pairs = hub.load_hub_pairs(tmp_path / "copy", spec=spec, task="t")
    assert len(pairs) > 0 and pairs["task"][0] == "t"
    if spec.kind == "retrieval":
        assert pairs.column_names == [*spec.target_columns, "task"]
        assert pairs["anchor"] == fixture[spec.columns["anchor"]]
        assert pairs["positive"] == fixture[spec.columns["positive"]]
    else:
        assert pairs.column_names == ["anchor", "positive", "negative_1", "task"]
        assert all(anchor != negative for anchor, negative in zip(pairs["anchor"], pairs["negative_1"]))


def test_sts_scale_with_a_floor_maps_onto_zero_to_five(tmp_path):
    # STS22 scores 1-4: 4 is the top (5 of 5), 1 the bottom (0 of 5), so its low partners become negatives.
    spec = hub.HUB_DATASETS["mteb/sts22-crosslingual-sts"]
    assert (spec.min_score, spec.max_score, spec.subset) == (1.0, 4.0, "en")
    rows = {"sentence1": ["a", "a", "b"], "sentence2": ["a'", "z", "y"], "score": [4.0, 1.0, 2.5]}
    datasets.Dataset.from_dict(rows).to_json(tmp_path / "sts22.jsonl")
    pairs = hub.load_hub_pairs(tmp_path / "sts22.jsonl", spec=spec)
    assert pairs["anchor"] == ["a"] and pairs["positive"] == ["a'"] and pairs["negative_1"] == ["z"]
    with pytest.raises(ValueError, match="max_score must be > min_score"):
        hub.HubDatasetSpec("sts", {"sentence1": "a", "sentence2": "b", "score": "s"}, max_score=1, min_score=1)


def test_beir_layout_takes_no_columns():
    with pytest.raises(ValueError, match="beir-layout dataset is retrieval and takes no columns"):
        hub.HubDatasetSpec("retrieval", {"anchor": "q", "positive": "p"}, layout="beir")
    with pytest.raises(ValueError, match="layout must be one of"):
        hub.HubDatasetSpec("retrieval", {"anchor": "q", "positive": "p"}, layout="tsv")


def test_full_yaml_lists_every_unverified_entry_as_unverified():
    import yaml

    text = (Path(__file__).resolve().parents[1] / "train" / "configs" / "full.yaml").read_text()
    entries = yaml.safe_load(text)["datasets"]
    paths = {entry["path"] for entry in entries.values() if "path" in entry}
    for line in text.splitlines():
        path = next((p for p in paths if f"path: {p}" in line), None)
        if path is not None and path in hub.HUB_DATASETS:
            assert ("unverified" in line) == (path in hub.unverified_datasets()), line
    beir = {name for name, spec in hub.HUB_DATASETS.items() if spec.layout == "beir"}
    assert beir <= paths and {"mteb/twentynewsgroups-clustering", "mteb/sts22-crosslingual-sts"} <= paths
