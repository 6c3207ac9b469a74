"""Run configs that name Hub datasets and synthetic queries under `datasets:` (train.config.DatasetConfig).

The Hub is never reached: the datasets are small local fixtures written here in the Hub datasets' own formats (the
column names of their dataset cards), given their published mapping with `hub_name`. Seconds on the tiny model.
"""

import json
import time
from pathlib import Path

import datasets
import pytest
import yaml
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from modeling_nvembed import format_instruction
from train import pipeline
from train.config import load_config
from train.data import TASKS, configured_tasks, hub, synthetic
from train.losses import HardNegativesOnlyRankingLoss


ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["gzip", "clock", "email", "regex"]


def write_fixtures(folder: Path) -> dict[str, Path]:
    """One small file or folder per Hub format: sentence-transformers pairs and triplets, mteb classification (int
    label + label_text), mteb clustering (rows of lists) and mteb STS (0-5 scores)."""
    folder.mkdir(parents=True)
    rows = range(16)
    nq = datasets.Dataset.from_dict(
        {
            "query": [f"{i} how does {TOPICS[i % 4]} work" for i in rows],
            "answer": [f"{i} {TOPICS[i % 4]} docs" for i in rows],
        }
    )
    nq.to_json(folder / "nq.jsonl")
    msmarco = datasets.Dataset.from_dict(
        {
            "query": [f"{i} what is {TOPICS[i % 4]}" for i in rows],
            "positive": [f"{i} {TOPICS[i % 4]} is a tool" for i in rows],
            "negative": [f"{i} {TOPICS[(i + 1) % 4]} is another tool" for i in rows],
        }
    )
    msmarco.to_parquet(folder / "msmarco-triplet.parquet")
    banking = datasets.Dataset.from_dict(
        {
            "text": [f"{i} my card {TOPICS[i % 4]} question" for i in rows],
            "label": [i % 4 for i in rows],
            "label_text": [f"intent_{TOPICS[i % 4]}" for i in rows],
        }
    )
    datasets.DatasetDict({"train": banking, "test": banking.select(range(4))}).save_to_disk(folder / "banking77")
    clusters = datasets.Dataset.from_dict(
        {
            "sentences": [[f"{j}{i} post about {TOPICS[i % 4]}" for i in rows] for j in range(2)],
            "labels": [[TOPICS[i % 4] for i in rows] for _ in range(2)],
        }
    )
    clusters.to_json(folder / "newsgroups.jsonl")
    sts = datasets.Dataset.from_dict(
        {
            "sentence1": [f"{i // 2} the {TOPICS[i % 4]} sentence" for i in rows],
            "sentence2": [f"{i} a {TOPICS[i % 4]} line" if i % 2 else f"{i} unrelated words" for i in rows],
            "score": [4.6 if i % 2 else 0.4 for i in rows],
        }
    )
    sts.to_json(folder / "stsb.jsonl")
    return {
        "nq": folder / "nq.jsonl",
        "msmarco": folder / "msmarco-triplet.parquet",
        "banking77": folder / "banking77",
        "newsgroups": folder / "newsgroups.jsonl",
        "stsb": folder / "stsb.jsonl",
    }


PASSAGES = {
    "gzip": "GNU gzip reduces the size of files using Lempel-Ziv coding, replacing each by one ending in .gz.",
    "ntp": "The daemon keeps the system clock in sync with time servers on the network, correcting drift.",
    "mutt": "A small but powerful text based mail client for reading and sending electronic messages.",
    "grep": "Searches the named input files for lines containing a match to the given regular expression.",
}
QUERIES = {
    PASSAGES["gzip"]: "shrink archives with lempel ziv",
    PASSAGES["ntp"]: "synchronise computer time over internet",
    PASSAGES["mutt"]: "terminal email reader",
    PASSAGES["grep"]: "find lines matching pattern in text",
}


@pytest.fixture()
def synthetic_source(monkeypatch, tmp_path):
    """debian_description's passages replaced by four (x4) hand-written ones; the LLM's queries are fixed strings."""
    ids = [f"{name}{copy}" for copy in range(4) for name in PASSAGES]
    texts = [f"{text} Copy {copy}." for copy in range(4) for text in PASSAGES.values()]
    source = datasets.Dataset.from_dict({"id": ids, "query": ["unused"] * len(ids), "passage": texts})
    monkeypatch.setattr(synthetic, "load_source", lambda task, cache_dir=None: {"train": source})
    written = []

    def generate(passages, *args):
        written.extend(passages)
        return [f"{QUERIES[p.rsplit(' Copy', 1)[0]]} {p[-2]}" for p in passages]

    monkeypatch.setattr(synthetic, "generate_queries", generate)
    monkeypatch.setenv("NVEMBED_DATA_DIR", str(tmp_path / "data_cache"))
    return written


def write_run_yaml(path: Path, base, fixtures: dict, generator) -> Path:
    entries = {
        "nq": {"path": str(fixtures["nq"]), "hub_name": "sentence-transformers/natural-questions"},
        "msmarco": {"path": str(fixtures["msmarco"]), "hub_name": "sentence-transformers/msmarco-bm25"},
        "banking": {"path": str(fixtures["banking77"]), "hub_name": "mteb/banking77"},
        "newsgroups": {
            "path": str(fixtures["newsgroups"]),
            "kind": "clustering",
            "columns": {"text": "sentences", "label": "labels"},
            "instruction": "Identify the topic of the news post",
        },
        "stsb": {"path": str(fixtures["stsb"]), "hub_name": "mteb/stsbenchmark-sts"},
        "queries": {"source": "synthetic", "passages": "debian_description", "limit": 16, "model": str(generator)},
    }
    stage = {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "num_hard_negatives": 0}
    run = {
        "output_dir": str(path.parent / "run"),
        "base_model": str(base),
        "max_seq_length": 32,
        "save_steps": 2,
        "logging_steps": 1,
        "lora_rank": 4,
        "lora_alpha": 8,
        "datasets": entries,
        "stages": [
            {**stage, "tasks": ["nq", "msmarco", "queries"]},
            {**stage, "tasks": ["nq", "banking", "newsgroups", "stsb"]},
        ],
    }
    path.write_text(yaml.safe_dump(run))
    return path


def test_yaml_naming_hub_fixtures_and_synthetic_queries_trains(
    tiny_nvembed_folder, tiny_causal_lm, synthetic_source, tmp_path, monkeypatch
):
    fixtures = write_fixtures(tmp_path / "hub")
    cfg = load_config(write_run_yaml(tmp_path / "run.yaml", tiny_nvembed_folder, fixtures, tiny_causal_lm))
    seen = {}
    original = pipeline.stage_datasets

    def recording(stage, cfg, miner):
        data, losses, prompts = original(stage, cfg, miner)
        # A copy: the trainer later sets a transform on these very datasets (prompts, dataset_name).
        seen.update({task: (data[task].flatten_indices(), type(losses[task]), prompts[task]) for task in data})
        return data, losses, prompts

    monkeypatch.setattr(pipeline, "stage_datasets", recording)
    final = pipeline.train(cfg)

    for index in (1, 2):
        assert json.loads((Path(cfg.output_dir) / f"stage{index}" / "done.json").read_text())["global_step"] == 2
    assert {task: loss for task, (_, loss, _) in seen.items()} == {
        "nq": MultipleNegativesRankingLoss,
        "msmarco": MultipleNegativesRankingLoss,
        "queries": MultipleNegativesRankingLoss,
        "banking": HardNegativesOnlyRankingLoss,
        "newsgroups": HardNegativesOnlyRankingLoss,
        "stsb": HardNegativesOnlyRankingLoss,
    }
    nq, msmarco = seen["nq"][0], seen["msmarco"][0]
    assert nq.column_names == ["anchor", "positive"] and nq[0] == {
        "anchor": "0 how does gzip work",
        "positive": "0 gzip docs",
    }
    assert msmarco.column_names == ["anchor", "positive", "negative_1"]  # the published negative, kept
    assert msmarco[1]["negative_1"] == "1 email is another tool"
    # Non-retrieval: positive shares the anchor's label (topic), negative_1 has another one.
    for task in ("banking", "newsgroups"):
        data = seen[task][0]
        assert data.column_names == ["anchor", "positive", "negative_1"] and len(data) >= 16
        topic = [next(t for t in TOPICS if t in text) for text in data["anchor"]]
        assert all(topic[i] in data["positive"][i] and topic[i] not in data["negative_1"][i] for i in range(len(data)))
    stsb = seen["stsb"][0]
    assert len(stsb) == 8 and all(a.split()[2] in p for a, p in zip(stsb["anchor"], stsb["positive"]))
    queries = seen["queries"][0]
    assert len(synthetic_source) == 16 and len(queries) == 16  # one query written per passage, all kept
    assert queries[0] == {"anchor": "shrink archives with lempel ziv 0", "positive": PASSAGES["gzip"] + " Copy 0."}
    assert seen["queries"][2] == {"anchor": format_instruction(synthetic.SYNTHETIC_INSTRUCTION)}
    assert seen["banking"][2]["anchor"] == format_instruction(hub.HUB_DATASETS["mteb/banking77"].instruction)

    instructions = json.loads((final / "instructions.json").read_text())
    assert instructions["stsb"] == {"kind": "sts", "instruction": "Retrieve semantically similar text"}
    assert instructions["newsgroups"]["kind"] == "clustering"
    prompts = json.loads((final / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts["query"] == prompts["nq"] and "Wikipedia passages" in prompts["nq"]

    # A second run reads the generated queries from the on-disk cache instead of generating again.
    cfg2 = load_config(tmp_path / "run.yaml", output_dir=str(tmp_path / "run2"))
    cfg2.stages = cfg2.stages[:1]
    pipeline.train(cfg2)
    assert len(synthetic_source) == 16


def test_hub_name_without_hub_access_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def no_work(cfg):
        raise AssertionError("the base model was prepared although a dataset cannot be loaded")

    monkeypatch.setattr(pipeline, "prepare_base_model", no_work)
    path = tmp_path / "hub.yaml"
    path.write_text(
        "datasets:\n  nq: {path: sentence-transformers/natural-questions}\n"
        f"output_dir: {tmp_path / 'run'}\nstages: [{{tasks: [debian_description]}}, {{tasks: [nq]}}]\n"
    )
    start = time.monotonic()
    with pytest.raises(
        hub.HubUnavailableError,
        match=r"'sentence-transformers/natural-questions'.*HF_HUB_OFFLINE=1.*"
        r"save_to_disk.*folder or file path",
    ):
        pipeline.train(load_config(path))
    assert time.monotonic() - start < 5
    path.write_text(
        f"datasets:\n  nq: {{path: {tmp_path / 'missing.jsonl'}, hub_name: sentence-transformers/natural-questions}}\n"
        f"output_dir: {tmp_path / 'run'}\nstages: [{{tasks: [nq]}}]\n"
    )
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        pipeline.train(load_config(path))


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"path": "x/y", "colums": {}}, "colums"),  # unknown key
        ({"source": "synthetic", "passages": "debian_description", "path": "x"}, "takes none of"),
        ({"source": "synthetic"}, "needs `passages`"),
        ({"source": "web", "path": "x"}, "source must be 'hub' or 'synthetic'"),
        ({"path": "x/y", "kind": "ranking"}, "kind must be"),
    ],
)
def test_bad_dataset_entries_are_refused_with_the_reason(tmp_path, entry, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"d": entry}, "stages": [{"tasks": ["d"]}]}))
    with pytest.raises(ValueError, match=rf"datasets\.d.*{message}"):
        load_config(path)


def test_unknown_mapping_and_builtin_name_clash_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets:\n  mine: {path: someone/unlisted}\nstages: [{tasks: [mine]}]\n")
    with pytest.raises(ValueError, match="datasets.mine: No column mapping known for 'someone/unlisted'"):
        configured_tasks(load_config(path).datasets)
    path.write_text("datasets:\n  debian_section: {path: mteb/banking77}\nstages: [{tasks: [debian_section]}]\n")
    with pytest.raises(ValueError, match="datasets.debian_section: the name of a built-in task"):
        configured_tasks(load_config(path).datasets)
    path.write_text("datasets:\n  q: {source: synthetic, passages: debian_tags_pairs}\nstages: [{tasks: [q]}]\n")
    with pytest.raises(ValueError, match="datasets.q: passages 'debian_tags_pairs' is an sts task"):
        configured_tasks(load_config(path).datasets)


def test_full_yaml_names_the_papers_datasets_each_with_a_known_mapping():
    cfg = load_config(ROOT / "train" / "configs" / "full.yaml")
    specs = configured_tasks(cfg.datasets)
    hub_entries = {name: entry for name, entry in cfg.datasets.items() if entry.source == "hub"}
    assert all(entry.path in hub.HUB_DATASETS and entry.hub_name is None for entry in hub_entries.values())
    kinds = {specs[name].kind for name in hub_entries}
    assert kinds == {"retrieval", "classification", "clustering", "sts"}
    assert all(specs[name].instruction for name in specs)
    for index, stage in enumerate(cfg.stages, start=1):
        unknown = [task for task in stage.tasks if task not in specs and task not in TASKS]
        assert not unknown, unknown
        if index == 1:  # stage 1 is retrieval only (paper section 4)
            assert {(specs.get(t) or TASKS[t]).kind for t in stage.tasks} == {"retrieval"}
    assert set(cfg.datasets) <= {task for stage in cfg.stages for task in stage.tasks}  # none listed but unused
    paths = {entry.path for entry in hub_entries.values()}
    for name in ("sentence-transformers/msmarco-bm25", "sentence-transformers/natural-questions", "mteb/banking77"):
        assert name in paths
