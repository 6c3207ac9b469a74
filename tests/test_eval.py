"""eval/: local mteb tasks score hand-made cases to known values, prompts reach queries only, errors are clear.

No real LLM: fake encoders return fixed vectors, so every expected score is computed by hand.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from mteb.cache import ResultCache  # noqa: E402
from mteb.results import TaskResult  # noqa: E402

from eval.export import export_task, retrieval_files  # noqa: E402
from eval.models import InstructEncoder, format_instruction, load_model  # noqa: E402
from eval.run import evaluate_model, markdown_table  # noqa: E402
from eval.tasks import KIND_OF_TYPE, LOCAL_TASKS, EvalDataMissingError, get_tasks  # noqa: E402


REPO = Path(__file__).resolve().parent.parent


class RecordingModel:
    """Stands in for a SentenceTransformer: fixed vector per text, and a log of (texts, prompt) per encode call."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = vectors
        self.calls: list[tuple[list[str], str | None]] = []

    def encode(self, texts, prompt=None, **kwargs):
        texts = list(texts)
        self.calls.append((texts, prompt))
        return np.array([self.vectors[text] for text in texts], dtype=np.float32)


def one_hot(i: int, n: int, scale: float = 1.0) -> list[float]:
    v = [0.0] * n
    v[i] = scale
    return v


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_retrieval(root: Path, n: int = 3, name: str = "debian_description") -> None:
    rows = [{"id": i, "query": f"query {i}", "passage": f"passage {i}"} for i in range(n)]
    for file_name, file_rows in retrieval_files(rows).items():
        write(root / name / "test" / f"{file_name}.jsonl", file_rows)


def run(model, task_name: str, root: Path, out: Path) -> dict:
    task = get_tasks([task_name], data_dir=root)[0]
    evaluate_model(model, [task], out)
    path = next((out / "results").rglob(f"{task_name}.json"))
    return TaskResult.from_disk(path).scores["test"][0]


def test_retrieval_perfect_embeddings_give_ndcg_one(tmp_path):
    make_retrieval(tmp_path / "data")
    vectors = {f"{side} {i}": one_hot(i, 3) for i in range(3) for side in ("query", "passage")}
    scores = run(InstructEncoder(RecordingModel(vectors), "fake"), "debian_description", tmp_path / "data", tmp_path)
    assert scores["main_score"] == pytest.approx(1.0)
    assert scores["ndcg_at_10"] == pytest.approx(1.0)


def test_retrieval_relevant_doc_always_second_gives_known_ndcg(tmp_path):
    # Query i is closest to passage i+1 and second closest to its own passage i: rank 2 for every query.
    make_retrieval(tmp_path / "data")
    vectors = {f"passage {i}": one_hot(i, 3) for i in range(3)}
    vectors |= {f"query {i}": [a + b for a, b in zip(one_hot((i + 1) % 3, 3), one_hot(i, 3, 0.5))] for i in range(3)}
    scores = run(InstructEncoder(RecordingModel(vectors), "fake"), "debian_description", tmp_path / "data", tmp_path)
    assert scores["ndcg_at_10"] == pytest.approx(1 / math.log2(3), abs=1e-5)
    assert scores["mrr_at_10"] == pytest.approx(0.5, abs=1e-5)
    assert scores["recall_at_1"] == pytest.approx(0.0)


def test_classification_perfect_embeddings_give_accuracy_one(tmp_path):
    labels = ["admin", "devel", "libs"]
    for split, n in (("train", 4), ("test", 3)):
        write(
            tmp_path / "data" / "debian_section" / f"{split}.jsonl",
            [{"text": f"{split} {label} {k}", "label": label} for label in labels for k in range(n)],
        )
    vectors = {
        f"{split} {label} {k}": one_hot(j, 3)
        for split in ("train", "test")
        for j, label in enumerate(labels)
        for k in range(4)
    }
    scores = run(InstructEncoder(RecordingModel(vectors), "fake"), "debian_section", tmp_path / "data", tmp_path)
    assert scores["main_score"] == pytest.approx(1.0)
    assert scores["accuracy"] == pytest.approx(1.0)


def test_clustering_perfect_embeddings_give_v_measure_one(tmp_path):
    rows = [{"text": f"doc {c} {k}", "label": f"module{c}"} for c in range(3) for k in range(4)]
    write(tmp_path / "data" / "pydoc_module" / "test.jsonl", rows)
    vectors = {row["text"]: one_hot(int(row["label"][-1]), 3) for row in rows}
    scores = run(InstructEncoder(RecordingModel(vectors), "fake"), "pydoc_module", tmp_path / "data", tmp_path)
    assert scores["main_score"] == pytest.approx(1.0)
    assert scores["v_measure"] == pytest.approx(1.0)


def test_sts_monotonic_similarity_gives_spearman_one(tmp_path):
    # sentence2 of pair k sits at angle (5 - score) * 15 degrees from sentence1: cosine rises with the gold score.
    gold = [0.0, 1.5, 2.0, 3.5, 5.0]
    rows = [{"sentence1": f"a{k}", "sentence2": f"b{k}", "score": s} for k, s in enumerate(gold)]
    write(tmp_path / "data" / "debian_tags_pairs" / "test.jsonl", rows)
    vectors = {f"a{k}": [1.0, 0.0] for k in range(len(gold))}
    vectors |= {
        f"b{k}": [math.cos(math.radians((5 - s) * 15)), math.sin(math.radians((5 - s) * 15))]
        for k, s in enumerate(gold)
    }
    scores = run(InstructEncoder(RecordingModel(vectors), "fake"), "debian_tags_pairs", tmp_path / "data", tmp_path)
    assert scores["main_score"] == pytest.approx(1.0)
    assert scores["cosine_spearman"] == pytest.approx(1.0)


def test_instruction_reaches_queries_only(tmp_path):
    make_retrieval(tmp_path / "data")
    vectors = {f"{side} {i}": one_hot(i, 3) for i in range(3) for side in ("query", "passage")}
    model = RecordingModel(vectors)
    run(InstructEncoder(model, "fake"), "debian_description", tmp_path / "data", tmp_path)
    instruction = LOCAL_TASKS["debian_description"].metadata.prompt["query"]
    prompts = {tuple(texts): prompt for texts, prompt in model.calls}
    query_prompts = [p for texts, p in prompts.items() if texts[0].startswith("query")]
    passage_prompts = [p for texts, p in prompts.items() if texts[0].startswith("passage")]
    assert query_prompts == [format_instruction(instruction)]
    assert query_prompts[0].startswith(f"Instruct: {instruction}\nQuery:")
    assert passage_prompts == [None]
    assert all("Instruct" not in text for texts, _ in model.calls for text in texts), (
        "prompt must not be glued to text"
    )


def test_symmetric_tasks_instruct_every_input(tmp_path):
    gold = [0.0, 5.0]
    write(
        tmp_path / "data" / "debian_tags_pairs" / "test.jsonl",
        [{"sentence1": f"a{k}", "sentence2": f"b{k}", "score": s} for k, s in enumerate(gold)],
    )
    model = RecordingModel({"a0": [1, 0], "a1": [1, 0], "b0": [0, 1], "b1": [1, 0]})
    run(InstructEncoder(model, "fake"), "debian_tags_pairs", tmp_path / "data", tmp_path)
    expected = format_instruction(LOCAL_TASKS["debian_tags_pairs"].metadata.prompt)
    assert model.calls and all(prompt == expected for _, prompt in model.calls)


def test_result_json_loads_back_with_mteb(tmp_path):
    make_retrieval(tmp_path / "data")
    vectors = {f"{side} {i}": one_hot(i, 3) for i in range(3) for side in ("query", "passage")}
    encoder = InstructEncoder(RecordingModel(vectors), "fake")
    run(encoder, "debian_description", tmp_path / "data", tmp_path)
    result = ResultCache(tmp_path).load_task_result("debian_description", encoder.mteb_model_meta)
    assert result is not None
    assert result.task_name == "debian_description"
    assert result.get_score(splits=["test"]) == pytest.approx(1.0)


def test_missing_files_fail_with_file_and_command(tmp_path):
    task = get_tasks(["pydoc_summary"], data_dir=tmp_path)[0]
    with pytest.raises(EvalDataMissingError) as error:
        task.load_data()
    message = str(error.value)
    assert str(tmp_path / "pydoc_summary" / "test" / "corpus.jsonl") in message
    assert "python -m eval.export --tasks pydoc_summary" in message


def test_bm25_ranks_the_matching_doc_first(tmp_path):
    passages = ["apt package manager for debian", "python regular expression module", "gnu image manipulation"]
    queries = ["debian package manager", "regular expression python", "image manipulation program"]
    rows = [{"id": i, "query": q, "passage": p} for i, (q, p) in enumerate(zip(queries, passages))]
    for file_name, file_rows in retrieval_files(rows).items():
        write(tmp_path / "data" / "pydoc_summary" / "test" / f"{file_name}.jsonl", file_rows)
    scores = run(load_model("bm25"), "pydoc_summary", tmp_path / "data", tmp_path)
    assert scores["ndcg_at_1"] == pytest.approx(1.0)
    assert scores["ndcg_at_10"] == pytest.approx(1.0)


def test_bm25_skips_non_retrieval_tasks(tmp_path):
    write(tmp_path / "data" / "pydoc_module" / "test.jsonl", [{"text": "x", "label": "a"}])
    task = get_tasks(["pydoc_module"], data_dir=tmp_path / "data")[0]
    assert evaluate_model(load_model("bm25"), [task], tmp_path) == {}


def test_export_writes_the_layout_the_tasks_read(tmp_path):
    from datasets import Dataset, DatasetDict

    split = {"query": ["q a", "q b"], "passage": ["p a", "p b"], "id": [10, 11]}
    source = DatasetDict({name: Dataset.from_dict(split) for name in ("train", "dev", "test")})
    export_task("debian_description", "retrieval", source, tmp_path, ["test", "dev"])
    task = get_tasks(["debian_description"], data_dir=tmp_path, split="dev")[0]
    task.load_data()
    data = task.dataset["default"]["dev"]
    assert data["relevant_docs"] == {"q10": {"d10": 1}, "q11": {"d11": 1}}
    assert list(data["corpus"]["text"]) == ["p a", "p b"]


def test_markdown_table_has_systems_rows_and_average():
    tasks = get_tasks(["debian_description", "debian_section"], data_dir="/nonexistent")
    table = markdown_table(
        {"a": {"debian_description": 0.5, "debian_section": 1.0}, "b": {"debian_description": 0.25}}, tasks
    )
    assert "| a | 50.00 | 100.00 | 75.00 |" in table
    assert "| b | 25.00 | - | 25.00 |" in table


def test_standard_mteb_task_offline_fails_fast_naming_the_dataset(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "eval", "bm25", "--tasks", "SciFact", "--output-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "mteb/scifact" in proc.stderr


def test_tasks_use_train_data_instruction_and_kind():
    from eval import ood
    from eval.tasks import IN_DOMAIN_TASKS, OUT_OF_DOMAIN_TASKS
    from train.data import TASKS

    assert set(LOCAL_TASKS) == set(IN_DOMAIN_TASKS) | set(OUT_OF_DOMAIN_TASKS)
    assert not set(OUT_OF_DOMAIN_TASKS) & set(TASKS)  # evaluation-only: no training builder
    for name, task_cls in LOCAL_TASKS.items():
        prompt = task_cls.metadata.prompt
        prompt = prompt["query"] if isinstance(prompt, dict) else prompt
        kind = KIND_OF_TYPE[task_cls.metadata.type]
        if name in TASKS:
            assert prompt == TASKS[name].instruction and kind == TASKS[name].kind, name
        else:
            assert prompt == ood.INSTRUCTIONS[name] and kind == ood.KINDS[name], name


def test_peer_specs_name_plain_folders_and_a_folder_without_modules_fails(tmp_path):
    from eval.models import plain_folder
    from nvembed_defaults import peer_model_path

    assert plain_folder("minilm") == peer_model_path()
    assert plain_folder(f"st:{tmp_path}") == tmp_path
    assert plain_folder(str(tmp_path)) is None and plain_folder("bm25") is None  # NV-Embed folders, other systems
    with pytest.raises(FileNotFoundError, match="no modules.json"):
        load_model(f"st:{tmp_path}")


def test_compare_parses_named_system_specs():
    from eval.compare import parse_models

    assert parse_models(["bm25=bm25", "ours=artifacts/x", "minilm"]) == {
        "bm25": "bm25",
        "ours": "artifacts/x",
        "minilm": "minilm",
    }
    with pytest.raises(ValueError, match="twice"):
        parse_models(["a=bm25", "a=minilm"])


def test_resume_reuses_results_and_a_changed_revision_reruns(tmp_path):
    make_retrieval(tmp_path / "data")
    vectors = {f"{side} {i}": one_hot(i, 3) for i in range(3) for side in ("query", "passage")}
    task = get_tasks(["debian_description"], data_dir=tmp_path / "data")[0]
    first = RecordingModel(vectors)
    scores = evaluate_model(InstructEncoder(first, "fake", revision="r1"), [task], tmp_path / "out", resume=True)
    assert first.calls and scores["debian_description"] == pytest.approx(1.0)

    again = RecordingModel(vectors)  # same name and revision: read back, nothing encoded
    reread = evaluate_model(InstructEncoder(again, "fake", revision="r1"), [task], tmp_path / "out", resume=True)
    assert reread == scores
    assert again.calls == []

    changed = RecordingModel(vectors)  # same name, new weights: rerun
    evaluate_model(InstructEncoder(changed, "fake", revision="r2"), [task], tmp_path / "out", resume=True)
    assert changed.calls
    without_resume = RecordingModel(vectors)
    evaluate_model(InstructEncoder(without_resume, "fake", revision="r1"), [task], tmp_path / "out")
    assert without_resume.calls


def test_folder_revision_changes_when_weights_change(tmp_path):
    from eval.models import folder_revision

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"a" * 10)
    before = folder_revision(tmp_path)
    assert folder_revision(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"b" * 11)
    assert folder_revision(tmp_path) != before


def test_folder_revision_sees_a_same_size_same_mtime_change(tmp_path):
    """A model re-saved with weights of the same size and the old mtime (a copy with `cp -p`, or a save within the
    file system's mtime resolution) is another revision: the fingerprint reads the content."""
    import os

    from eval.models import folder_revision

    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 10)
    stat = weights.stat()
    before = folder_revision(tmp_path)
    weights.write_bytes(b"a" * 9 + b"b")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert folder_revision(tmp_path) != before
    weights.write_bytes(b"a" * 10)  # the same content again: the same revision, whatever the mtime
    assert folder_revision(tmp_path) == before
    (tmp_path / "config.json").write_text("[]")  # configs count too (same size)
    assert folder_revision(tmp_path) != before
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no weights"):
        folder_revision(tmp_path / "empty")


def test_classification_trains_on_the_first_rows_of_each_label(tmp_path):
    labels = ["admin", "devel"]
    write(
        tmp_path / "data" / "debian_section" / "train.jsonl",
        [{"text": f"train {label} {k}", "label": label} for k in range(30) for label in labels],
    )
    write(tmp_path / "data" / "debian_section" / "test.jsonl", [{"text": "test admin", "label": "admin"}])
    task = get_tasks(["debian_section"], data_dir=tmp_path / "data")[0]
    task.load_data()
    train = task.dataset["train"]
    cap = task.train_rows_per_label
    assert len(train) == 2 * cap
    assert sorted(train["text"]) == sorted(f"train {label} {k}" for label in labels for k in range(cap))
    assert len(task.dataset["test"]) == 1


def test_compare_cli_reports_a_bad_system_list_as_an_error(tmp_path, capsys):
    from eval.compare import main

    assert main(["--models", "a=bm25", "a=minilm", "--output-dir", str(tmp_path)]) == 2
    assert "given twice" in capsys.readouterr().err
