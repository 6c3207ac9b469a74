"""Teacher-vector distillation through a learned projection (`vector_weight`, `teacher_vectors`, TeacherVectorLoss)."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tests.test_geometry import _config, _geometry_pool, one_entry_run
from tests.test_train import SPECS, toy_pairs
from train import pipeline
from train.config import VECTORS_TASK, RunConfig, StageConfig
from train.losses import DistilledMultipleNegativesRankingLoss, TeacherVectorLoss


@pytest.fixture()
def tiny_st(tiny_nvembed_folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")


@pytest.fixture()
def toy_texts(monkeypatch):
    monkeypatch.setattr(pipeline, "training_pairs", toy_pairs)
    monkeypatch.setattr(pipeline, "task_specs", lambda: SPECS)
    monkeypatch.setattr(pipeline, "geometry_texts", _geometry_pool)


def test_vector_loss_is_one_minus_the_cosine_to_the_teacher_through_the_projection_by_hand(tiny_st):
    dim = tiny_st.get_embedding_dimension()
    loss = TeacherVectorLoss(tiny_st, teacher_dim=3, weight=2.0)
    anchors, positives = torch.randn(4, dim), torch.randn(4, dim)
    teacher_a, teacher_p = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.cat([teacher_a, teacher_p], dim=1)  # train.distill's layout: columns concatenated per row
    got = loss.term([anchors, positives], labels)
    project = loss.projection
    by_hand = [
        (1 - F.cosine_similarity(project(s), t, dim=-1)).mean()
        for s, t in ((anchors, teacher_a), (positives, teacher_p))
    ]
    assert got.item() == pytest.approx(2.0 * torch.stack(by_hand).mean().item(), rel=1e-5)


def test_vector_loss_refuses_a_misshaped_teacher_column_or_a_bad_weight(tiny_st):
    dim = tiny_st.get_embedding_dimension()
    loss = TeacherVectorLoss(tiny_st, teacher_dim=3)
    with pytest.raises(ValueError, match="2 \\* teacher_dim"):
        loss.term([torch.randn(4, dim), torch.randn(4, dim)], torch.randn(4, 5))
    with pytest.raises(ValueError, match="weight must be > 0"):
        TeacherVectorLoss(tiny_st, teacher_dim=3, weight=0)
    with pytest.raises(ValueError, match="vector_weight must be >= 0"):
        RunConfig(stages=[StageConfig()], vector_weight=-1)
    with pytest.raises(ValueError, match="vector_weight and matryoshka_dims"):
        RunConfig(stages=[StageConfig()], vector_weight=1.0, matryoshka_dims=[8, 16])


def test_one_projection_serves_the_vectors_entry_and_the_distilled_ranking_loss(
    tiny_nvembed_folder, toy_texts, tmp_path
):
    cfg = _config(tmp_path, tiny_nvembed_folder, distill_weight=1.0, vector_weight=0.5)
    cfg.stages[0].tasks = ["toy_retrieval", VECTORS_TASK]
    cfg.stages[0].max_examples_per_task = {"toy_retrieval": 48, VECTORS_TASK: 40}
    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    miner = pipeline.Miner(model, cfg, "cpu")
    datasets, losses, prompts = pipeline.stage_datasets(cfg.stages[0], cfg, miner)
    vectors, ranking = losses[VECTORS_TASK], losses["toy_retrieval"]
    assert isinstance(vectors, TeacherVectorLoss) and vectors.weight == 0.5
    assert isinstance(ranking, DistilledMultipleNegativesRankingLoss) and ranking.vector_loss is vectors
    assert pipeline.teacher_projection(losses) is vectors.projection
    assert (vectors.projection.in_features, vectors.projection.out_features) == (model.get_embedding_dimension(), 384)
    assert VECTORS_TASK not in prompts and datasets[VECTORS_TASK].column_names == ["anchor", "label"]
    # without the switch the entry has no loss weight: a clear error, not a silent default
    cfg.vector_weight = 0.0
    with pytest.raises(ValueError, match="needs vector_weight > 0"):
        pipeline.stage_datasets(cfg.stages[0], cfg, miner)
    cfg.stages[0].tasks = ["toy_retrieval"]
    cfg.stages[0].max_examples_per_task = 48
    _, losses, _ = pipeline.stage_datasets(cfg.stages[0], cfg, miner)
    assert losses["toy_retrieval"].vector_loss is None and pipeline.teacher_projection(losses) is None


def test_training_on_the_vectors_entry_brings_the_projected_student_to_the_teacher(
    tiny_nvembed_folder, toy_texts, tmp_path
):
    cfg, model, miner, texts, teacher = one_entry_run(tmp_path, tiny_nvembed_folder, VECTORS_TASK, vector_weight=1.0)
    stage_dir = tmp_path / "run" / "stage1"

    def gap(projection):
        with torch.no_grad():
            student = torch.tensor(model.encode(texts))
            return (1 - F.cosine_similarity(projection(student), teacher, dim=-1)).mean().item()

    start = torch.nn.Linear(model.get_embedding_dimension(), 384)
    pipeline.run_stage(model, cfg.stages[0], 1, cfg, miner, "cpu")
    trained = torch.nn.Linear(model.get_embedding_dimension(), 384)
    pipeline.load_projection(trained, stage_dir / "final")  # the projection the stage ended with is saved
    assert gap(trained) < 0.75 * gap(start), (gap(start), gap(trained))  # 0.99 -> 0.59 at these settings
    # every checkpoint carries the projection of its step, so a resumed run goes on with it
    saved = load_file(str(stage_dir / "checkpoint-15" / pipeline.PROJECTION_FILE))
    assert torch.equal(saved["weight"], trained.weight)


def test_a_resumed_stage_restores_the_projection_and_refuses_a_checkpoint_without_one(
    tiny_nvembed_folder, toy_texts, tmp_path
):
    cfg = _config(tmp_path, tiny_nvembed_folder, vector_weight=1.0, save_steps=2)
    cfg.stages[0].tasks = [VECTORS_TASK]
    cfg.stages[0].max_examples_per_task = 40
    cfg.stages[0].max_steps = 2
    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    pipeline.run_stage(model, cfg.stages[0], 1, cfg, pipeline.Miner(model, cfg, "cpu"), "cpu")
    stage_dir = tmp_path / "run" / "stage1"
    saved = load_file(str(stage_dir / "checkpoint-2" / pipeline.PROJECTION_FILE))["weight"]
    (stage_dir / "done.json").unlink()  # as if the run had been cut after its checkpoint: the stage resumes
    cfg.stages[0].max_steps = 3
    seen = []
    real = pipeline.load_projection

    def pipeline_load(projection, folder):
        seen.append(folder)
        real(projection, folder)

    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "load_projection", pipeline_load)
        pipeline.run_stage(model, cfg.stages[0], 1, cfg, pipeline.Miner(model, cfg, "cpu"), "cpu")
    assert [str(folder).endswith("checkpoint-2") for folder in seen] == [True]
    resumed = torch.nn.Linear(saved.shape[1], saved.shape[0])
    real(resumed, stage_dir / "checkpoint-2")
    assert torch.equal(resumed.weight, saved)
    (stage_dir / "checkpoint-2" / pipeline.PROJECTION_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="without their projection"):
        pipeline.load_projection(resumed, stage_dir / "checkpoint-2")


def test_stage_two_starts_from_stage_ones_projection(tiny_nvembed_folder, toy_texts, tmp_path, monkeypatch):
    cfg = _config(tmp_path, tiny_nvembed_folder, vector_weight=1.0, distill_weight=1.0)
    first = cfg.stages[0]
    first.tasks, first.max_examples_per_task, first.max_steps = [VECTORS_TASK], 40, 2
    second = StageConfig(
        tasks=["toy_retrieval"],
        max_steps=1,
        batch_size=8,
        learning_rate=3e-3,
        num_hard_negatives=0,
        max_examples_per_task=16,
    )
    cfg.stages = [first, second]
    loaded = []
    real = pipeline.load_projection

    def record(projection, folder):
        loaded.append(str(folder))
        real(projection, folder)

    monkeypatch.setattr(pipeline, "load_projection", record)
    pipeline.train(cfg, tmp_path / "final")
    assert loaded == [str(tmp_path / "run" / "stage1" / "final")]
    assert (tmp_path / "run" / "stage2" / "final" / pipeline.PROJECTION_FILE).is_file()


def test_ridge_recovers_a_linear_map_and_fit_projection_refuses_mismatched_vectors(tiny_st):
    from train.losses import ridge

    torch.manual_seed(0)
    x, w, b = torch.randn(200, 6), torch.randn(6, 3), torch.randn(3)
    got_w, got_b = ridge(x, x @ w + b, alpha=1e-6)
    assert torch.allclose(got_w.float(), w, atol=1e-4) and torch.allclose(got_b.float(), b, atol=1e-4)
    shrunk, _ = ridge(x, x @ w + b, alpha=1e4)  # the penalty pulls the map toward 0
    assert shrunk.norm() < 0.1 * w.norm()
    loss = TeacherVectorLoss(tiny_st, teacher_dim=3)
    dim = tiny_st.get_embedding_dimension()
    with pytest.raises(ValueError, match="same texts"):
        loss.fit_projection(torch.randn(5, dim), torch.randn(4, 3))
    with pytest.raises(ValueError, match="projection"):
        loss.fit_projection(torch.randn(5, dim + 1), torch.randn(5, 3))


def test_vector_init_ridge_starts_a_fresh_run_at_the_ridge_map_and_a_resumed_one_at_its_checkpoint(
    tiny_nvembed_folder, toy_texts, tmp_path
):
    with pytest.raises(ValueError, match="vector_init must be"):
        RunConfig(stages=[StageConfig()], vector_init="zeros")
    with pytest.raises(ValueError, match="needs vector_weight > 0"):
        RunConfig(stages=[StageConfig()], vector_init="ridge")
    cfg = _config(tmp_path, tiny_nvembed_folder, vector_weight=1.0, vector_init="ridge", save_steps=2)
    cfg.stages[0].tasks = [VECTORS_TASK]
    cfg.stages[0].max_examples_per_task = 40
    cfg.stages[0].max_steps = 2
    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    miner = pipeline.Miner(model, cfg, "cpu")
    datasets, losses, prompts = pipeline.stage_datasets(cfg.stages[0], cfg, miner)
    vectors = pipeline.teacher_vector_loss(losses)
    rows = datasets[VECTORS_TASK]
    student = model.encode(rows["anchor"], convert_to_tensor=True).float().clone()
    teacher = torch.tensor(rows["label"])

    def cosine():
        with torch.no_grad():
            return F.cosine_similarity(vectors.projection(student), teacher).mean().item()

    random_start = cosine()
    fit = pipeline.fit_projection_to_teacher(vectors, model, datasets, prompts, cfg.seed)
    assert fit > random_start + 0.2
    assert fit == pytest.approx(cosine(), abs=1e-4)  # fitted on these 40 texts, all of the entry

    fits = []
    real = pipeline.fit_projection_to_teacher
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "fit_projection_to_teacher", lambda *a, **k: fits.append(real(*a, **k)))
        pipeline.run_stage(model, cfg.stages[0], 1, cfg, miner, "cpu")
        assert len(fits) == 1  # a fresh stage 1
        (tmp_path / "run" / "stage1" / "done.json").unlink()  # cut after its checkpoint: it resumes
        cfg.stages[0].max_steps = 3
        model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
        pipeline.run_stage(model, cfg.stages[0], 1, cfg, pipeline.Miner(model, cfg, "cpu"), "cpu")
        assert len(fits) == 1  # the checkpoint's projection, not a new fit
