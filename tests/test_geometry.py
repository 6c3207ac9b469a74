"""The teacher's geometry on unrelated texts (`teacher_geometry`, `TeacherGeometryLoss`) and the teacher setting."""

import json
import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from tests.test_train import SPECS, toy_pairs
from train import pipeline
from train.config import GEOMETRY_TASK, RunConfig, StageConfig
from train.losses import TeacherGeometryLoss


def _unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_geometry_loss_is_the_mse_of_off_diagonal_cosines_by_hand(tiny_model):
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 4.0]])  # norms differ from 1: the loss is cosine
    teacher = _unit([1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0])  # another dimension than the student's
    s = [[1, 0, 0.6], [0, 1, 0.8], [0.6, 0.8, 1]]
    t = [[1, math.sqrt(0.5), 0], [math.sqrt(0.5), 1, 0], [0, 0, 1]]
    by_hand = sum((s[i][j] - t[i][j]) ** 2 for i in range(3) for j in range(3) if i != j) / 6
    loss = TeacherGeometryLoss(tiny_model)
    assert loss.compute_loss_from_embeddings([student], teacher).item() == pytest.approx(by_hand, rel=1e-5)
    # Two columns of 2 rows are the same 4 texts as one column: (row 0 col 0, row 1 col 0, row 0 col 1, row 1 col 1)
    four, teacher4 = torch.cat([student, student[:1] * -1]), torch.cat([teacher, teacher[1:2]])
    one_column = loss.compute_loss_from_embeddings([four], teacher4)
    two_columns = loss.compute_loss_from_embeddings([four[:2], four[2:]], torch.cat([teacher4[:2], teacher4[2:]], 1))
    assert two_columns.item() == pytest.approx(one_column.item(), rel=1e-6)


def test_geometry_kl_term_matches_the_softmax_kl_over_the_other_texts(tiny_model):
    student = _unit([1.0, 0.0], [0.0, 1.0], [0.6, 0.8])
    teacher = _unit([1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    scale = 2.0
    mse = TeacherGeometryLoss(tiny_model).compute_loss_from_embeddings([student], teacher).item()
    both = TeacherGeometryLoss(tiny_model, kl_weight=0.5, scale=scale).compute_loss_from_embeddings([student], teacher)
    s, t = (student @ student.T).tolist(), (teacher @ teacher.T).tolist()
    kl = 0.0
    for i in range(3):
        others = [j for j in range(3) if j != i]
        zs = sum(math.exp(scale * s[i][j]) for j in others)
        zt = sum(math.exp(scale * t[i][j]) for j in others)
        for j in others:
            p = math.exp(scale * t[i][j]) / zt
            kl += p * (math.log(p) - (scale * s[i][j] - math.log(zs)))
    assert both.item() == pytest.approx(mse + 0.5 * kl / 3, rel=1e-4)


def test_geometry_loss_refuses_a_missing_or_misshaped_teacher_column(tiny_model):
    loss = TeacherGeometryLoss(tiny_model)
    with pytest.raises(ValueError, match="teacher vectors"):
        loss.compute_loss_from_embeddings([torch.ones(3, 4)], None)
    with pytest.raises(ValueError, match="teacher vectors"):
        loss.compute_loss_from_embeddings([torch.ones(3, 4), torch.ones(3, 4)], torch.ones(3, 5))
    with pytest.raises(ValueError, match="kl_weight"):
        TeacherGeometryLoss(tiny_model, kl_weight=-1)
    with pytest.raises(ValueError, match="weight must be > 0"):
        TeacherGeometryLoss(tiny_model, weight=0)
    weighted = TeacherGeometryLoss(tiny_model, weight=3.0).compute_loss_from_embeddings(
        [torch.eye(3)], torch.ones(3, 2)
    )
    assert weighted.item() == pytest.approx(
        3 * loss.compute_loss_from_embeddings([torch.eye(3)], torch.ones(3, 2)).item()
    )


def _geometry_pool(limit, seed):
    words = "river stone garden letter music window bread winter silver market".split()
    texts = [f"{a} {b} {i}" for i, (a, b) in enumerate((a, b) for a in words for b in words if a != b)]
    return Dataset.from_dict({"anchor": texts[:limit]})


def _config(tmp_path, base, **overrides):
    stage = StageConfig(
        tasks=["toy_retrieval", GEOMETRY_TASK],
        max_steps=4,
        batch_size=8,
        learning_rate=3e-3,
        num_hard_negatives=0,
        max_examples_per_task={"toy_retrieval": 48, GEOMETRY_TASK: 40},
    )
    values = dict(
        output_dir=str(tmp_path / "run"),
        base_model=str(base),
        stages=[stage],
        max_seq_length=16,
        save_steps=50,
        logging_steps=1,
        lora=False,
        mining_cache_dir=str(tmp_path / "cache"),
    )
    values.update(overrides)
    return RunConfig(**values)


def one_entry_run(tmp_path, base, task, **overrides):
    """A 15-step stage on 40 texts of one entry (teacher_geometry / teacher_vectors): config, model, miner, the texts
    and their teacher vectors."""
    cfg = _config(tmp_path, base, **overrides)
    cfg.stages[0].tasks = [task]
    cfg.stages[0].max_examples_per_task = 40
    cfg.stages[0].max_steps = 15
    model = pipeline.load_for_training(base, cfg, "cpu")
    miner = pipeline.Miner(model, cfg, "cpu")
    texts = _geometry_pool(40, 0)["anchor"]
    return cfg, model, miner, texts, torch.tensor(miner.teacher.encode(texts, normalize_embeddings=True))


@pytest.fixture()
def toy_geometry(monkeypatch):
    monkeypatch.setattr(pipeline, "training_pairs", toy_pairs)
    monkeypatch.setattr(pipeline, "task_specs", lambda: SPECS)
    monkeypatch.setattr(pipeline, "geometry_texts", _geometry_pool)


def test_the_geometry_entry_gets_teacher_vectors_no_prompt_and_its_loss(tiny_nvembed_folder, toy_geometry, tmp_path):
    cfg = _config(tmp_path, tiny_nvembed_folder)
    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    miner = pipeline.Miner(model, cfg, "cpu")
    datasets, losses, prompts = pipeline.stage_datasets(cfg.stages[0], cfg, miner)
    assert isinstance(losses[GEOMETRY_TASK], TeacherGeometryLoss)
    assert GEOMETRY_TASK not in prompts and "toy_retrieval" in prompts  # plain encode() is what it trains
    rows = datasets[GEOMETRY_TASK]
    assert rows.column_names == ["anchor", "label"] and len(rows) == 40
    teacher = miner.teacher.encode(rows["anchor"][:3], normalize_embeddings=True)
    assert torch.tensor(rows["label"][:3]).allclose(torch.tensor(teacher), atol=1e-5)
    record = [json.loads(line) for line in (Path(cfg.output_dir) / "teacher_encoding.jsonl").read_text().splitlines()]
    assert record[0]["task"] == GEOMETRY_TASK and record[0]["texts"] == 40 and record[0]["seconds"] >= 0


def test_training_on_the_geometry_entry_brings_the_students_cosines_to_the_teachers(
    tiny_nvembed_folder, toy_geometry, tmp_path
):
    cfg, model, miner, texts, teacher = one_entry_run(tmp_path, tiny_nvembed_folder, GEOMETRY_TASK)

    def gap():
        student = torch.tensor(model.encode(texts, normalize_embeddings=True))
        return ((student @ student.T - teacher @ teacher.T) ** 2).mean().item()

    before = gap()
    pipeline.run_stage(model, cfg.stages[0], 1, cfg, miner, "cpu")
    assert gap() < 0.8 * before, (before, gap())  # 0.054 -> 0.038 at these settings


def test_teacher_model_is_a_setting_with_its_own_cache(tiny_nvembed_folder, tmp_path, monkeypatch):
    from nvembed_defaults import peer_model_path

    assert pipeline.teacher_key(RunConfig(stages=[StageConfig()])) == "minilm"
    other = RunConfig(stages=[StageConfig()], teacher_model=str(peer_model_path()))
    assert pipeline.teacher_key(other) not in ("minilm", pipeline.teacher_key(RunConfig(stages=[StageConfig()])))
    assert pipeline.load_teacher(str(peer_model_path()), "cpu").get_sentence_embedding_dimension() == 384
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not a folder here and the Hub is offline"):
        pipeline.load_teacher("someone/stronger-teacher", "cpu")
    with pytest.raises(ValueError, match="teacher_model"):
        RunConfig(stages=[StageConfig()], teacher_model=" ")


def test_matryoshka_wraps_every_loss_and_trains_the_leading_dimensions(tiny_nvembed_folder, toy_geometry, tmp_path):
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    cfg = _config(tmp_path, tiny_nvembed_folder)
    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    full = model.get_embedding_dimension()
    cfg.matryoshka_dims = [8, full]
    _, losses, _ = pipeline.stage_datasets(cfg.stages[0], cfg, pipeline.Miner(model, cfg, "cpu"))
    assert all(isinstance(loss, MatryoshkaLoss) and loss.matryoshka_dims == (full, 8) for loss in losses.values())
    cfg.matryoshka_dims = [8, 16]
    with pytest.raises(ValueError, match="must end at the model's embedding size"):
        pipeline.stage_datasets(cfg.stages[0], cfg, pipeline.Miner(model, cfg, "cpu"))
    with pytest.raises(ValueError, match="matryoshka_dims"):
        RunConfig(stages=[StageConfig()], matryoshka_dims=[64, 64])


def test_a_matryoshka_run_records_its_sizes_in_the_folders_config(tiny_nvembed_folder, toy_geometry, tmp_path):
    """config.json's `matryoshka_dimensions` is what a server reads to offer cut vectors (serve.app); a run without
    the loss records none, and the config refuses sizes that do not end at the embedding size."""
    from transformers import AutoConfig

    cfg = _config(tmp_path, tiny_nvembed_folder)
    cfg.stages[0].max_steps = 1
    full = AutoConfig.from_pretrained(tiny_nvembed_folder, trust_remote_code=True).text_config.hidden_size
    cfg.matryoshka_dims = [full, 8]
    config = AutoConfig.from_pretrained(pipeline.train(cfg, tmp_path / "mrl"), trust_remote_code=True)
    assert config.matryoshka_dimensions == [8, full]
    cfg = _config(tmp_path / "plain", tiny_nvembed_folder)
    cfg.stages[0].max_steps = 1
    plain = AutoConfig.from_pretrained(pipeline.train(cfg, tmp_path / "plain-final"), trust_remote_code=True)
    assert plain.matryoshka_dimensions is None
    for bad in ([8, 16], [], [8, 8, full], [0, full]):
        with pytest.raises(ValueError, match="matryoshka_dimensions"):
            type(config)(text_config=config.text_config.to_dict(), matryoshka_dimensions=bad)


def test_a_run_with_the_geometry_entry_saves_a_folder_whose_query_prompt_is_a_retrieval_tasks(
    tiny_nvembed_folder, toy_geometry, tmp_path
):
    cfg = _config(tmp_path, tiny_nvembed_folder)
    cfg.stages[0].tasks = [GEOMETRY_TASK, "toy_retrieval"]
    cfg.stages[0].max_steps = 2
    final = pipeline.train(cfg)
    prompts = json.loads((final / "config_sentence_transformers.json").read_text())["prompts"]
    assert GEOMETRY_TASK not in prompts
    assert prompts["query"] == prompts["toy_retrieval"]


def test_a_task_with_an_empty_instruction_trains_and_saves_with_no_prompt(tiny_nvembed_folder, monkeypatch, tmp_path):
    """broad_paraphrase's kind of task: plain rows, no prompt on either side in training, "" in the folder, and never
    the folder's "query" prompt even when it comes first."""
    specs = {**SPECS, "toy_plain": type(SPECS["toy_retrieval"])("retrieval", "")}
    monkeypatch.setattr(pipeline, "training_pairs", lambda task, label_negatives=1: toy_pairs("toy_retrieval"))
    monkeypatch.setattr(pipeline, "task_specs", lambda: specs)
    cfg = _config(tmp_path, tiny_nvembed_folder)
    cfg.stages[0].tasks = ["toy_plain", "toy_retrieval"]
    cfg.stages[0].max_examples_per_task = {"toy_plain": 16, "toy_retrieval": 16}
    cfg.stages[0].max_steps = 2
    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    _, _, prompts = pipeline.stage_datasets(cfg.stages[0], cfg, pipeline.Miner(model, cfg, "cpu"))
    assert "toy_plain" not in prompts and "toy_retrieval" in prompts
    saved = json.loads((pipeline.train(cfg) / "config_sentence_transformers.json").read_text())["prompts"]
    assert saved["toy_plain"] == "" and saved["query"] == saved["toy_retrieval"] != ""
