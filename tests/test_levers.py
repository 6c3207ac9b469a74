"""The training levers of issue 11: identity latent init, in-batch distillation, the levers sweep's overrides, and the
out-of-domain evaluation tasks."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.config import RunConfig, StageConfig
from train.losses import (
    DistilledMultipleNegativesRankingLoss,
    passage_distillation,
    similarity_distillation,
    similarity_mse,
)


def test_identity_latent_init_equals_mean_pooling_of_the_backbone(tiny_causal_lm, tmp_path):
    from convert_to_nvembed import convert
    from modeling_nvembed import NVEmbedModel, format_instruction, masked_mean

    instruction = format_instruction("Given a query, retrieve relevant passages")
    texts = ["gzip compresses files", "the quick brown fox jumps over the lazy dog"]
    embeddings = {}
    for init in ("identity", "random"):
        folder = convert(
            tiny_causal_lm, tmp_path / init, num_latents=16, num_heads=2, cross_dim_head=8, latent_init=init
        )
        model = NVEmbedModel.from_pretrained(folder).eval()
        batch = model.tokenize(texts, instruction=instruction)
        with torch.no_grad():
            hidden = model.embedding_model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
            embeddings[init] = model(**batch)["sentence_embeddings"]
        expected = F.normalize(masked_mean(hidden, batch["pool_mask"]), dim=-1)
        if init == "identity":
            torch.testing.assert_close(embeddings[init], expected, atol=1e-6, rtol=1e-5)
        else:  # the release's random init moves every text away from the mean
            assert (embeddings[init] - expected).abs().max() > 1e-3
        # the pooled rows are text + EOS only: the instruction is attended to, not pooled
        assert (batch["pool_mask"].sum(1) < batch["attention_mask"].sum(1)).all()


def test_identity_latent_init_still_trains_every_latent_parameter(tiny_causal_lm, tmp_path):
    from convert_to_nvembed import convert
    from modeling_nvembed import NVEmbedModel

    folder = convert(tiny_causal_lm, tmp_path / "m", num_latents=16, num_heads=2, cross_dim_head=8)
    model = NVEmbedModel.from_pretrained(folder)
    batch = model.tokenize(["gzip compresses files", "a fox"])
    opt = torch.optim.SGD(model.latent_attention_model.parameters(), lr=0.5)
    for _ in range(2):  # step 1 moves the zeroed output layers; after it, gradients reach q/kv/latents too
        opt.zero_grad()
        out = model(**batch)["sentence_embeddings"]
        (out[0] @ out[1]).backward()
        opt.step()
    grads = {n: p.grad.abs().sum().item() for n, p in model.latent_attention_model.named_parameters()}
    assert all(g > 0 for n, g in grads.items() if "norm" not in n), grads


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_converting_the_lower_layers_keeps_their_computation(family, tmp_path):
    from conftest import build_causal_lm_folder

    from convert_to_nvembed import convert
    from modeling_nvembed import NVEmbedModel

    source = build_causal_lm_folder(tmp_path / "lm", family)
    kwargs = dict(num_latents=16, num_heads=2, cross_dim_head=8)
    full = NVEmbedModel.from_pretrained(convert(source, tmp_path / "full", **kwargs)).eval()
    lower = NVEmbedModel.from_pretrained(convert(source, tmp_path / "lower", num_layers=1, **kwargs)).eval()
    assert lower.config.text_config.num_hidden_layers == 1 and len(lower.embedding_model.layers) == 1
    if family == "qwen2":  # per-layer attention kinds are cut with the layers
        assert len(lower.config.text_config.layer_types) == 1
    # ids drawn inside the tiny vocabulary (the tiny qwen2 folder's tokenizer pads with an id past it), one row padded
    torch.manual_seed(0)
    ids = torch.randint(3, full.config.text_config.vocab_size, (2, 9))
    inputs = dict(input_ids=ids, attention_mask=torch.tensor([[1] * 9, [1] * 5 + [0] * 4]))
    with torch.no_grad():
        first = full.embedding_model(**inputs, output_hidden_states=True).hidden_states[1]
        got = lower.embedding_model(**inputs).last_hidden_state
    # the lower model's output is the full model's first layer, bidirectional, under the final norm
    torch.testing.assert_close(got, full.embedding_model.norm(first), atol=1e-5, rtol=1e-5)
    assert lower.encode(["the fox"]).shape == full.encode(["the fox"]).shape


@pytest.mark.parametrize("num_layers", [0, 3])
def test_converting_more_layers_than_the_backbone_has_is_refused(num_layers, tiny_causal_lm, tmp_path):
    from convert_to_nvembed import convert

    with pytest.raises(ValueError, match="between 1 and the backbone's 2 layers"):
        convert(tiny_causal_lm, tmp_path / "m", num_latents=16, num_heads=2, cross_dim_head=8, num_layers=num_layers)


def test_backbone_layers_is_refused_for_an_nvembed_base(tiny_nvembed_folder, tmp_path):
    from train.pipeline import prepare_base_model

    with pytest.raises(ValueError, match="backbone_layers must be >= 1"):
        RunConfig(backbone_layers=0, stages=[StageConfig(tasks=["debian_description"])])
    cfg = RunConfig(
        base_model=str(tiny_nvembed_folder),
        backbone_layers=1,
        output_dir=str(tmp_path),
        stages=[StageConfig(tasks=["debian_description"])],
    )
    with pytest.raises(ValueError, match="already an NV-Embed folder"):
        prepare_base_model(cfg)


def test_similarity_distillation_matches_hand_computed_kl():
    torch.manual_seed(0)
    b, d, dt = 3, 5, 4
    student = [torch.randn(b, d), torch.randn(b, d), torch.randn(b, d)]  # anchor, positive, negative_1
    teacher_cols = [F.normalize(torch.randn(b, dt), dim=-1) for _ in range(3)]
    teacher = torch.cat(teacher_cols, dim=1)  # (b, 3 * dt), the `label` column layout
    scale, t_scale = 20.0, 10.0
    got = similarity_distillation(student, teacher, scale, t_scale)
    # by hand: row i's distribution over the 2b candidates [pos_0..pos_2, neg_0..neg_2]
    s_docs = [F.normalize(x, dim=-1) for x in (student[1], student[2])]
    t_docs = teacher_cols[1:]
    expected = 0.0
    for i in range(b):
        q = F.normalize(student[0][i], dim=-1)
        s_scores = torch.tensor([float(q @ doc[j]) * scale for doc in s_docs for j in range(b)])
        t_scores = torch.tensor([float(teacher_cols[0][i] @ doc[j]) * t_scale for doc in t_docs for j in range(b)])
        p = torch.softmax(t_scores, 0)
        expected += float((p * (p.log() - torch.log_softmax(s_scores, 0))).sum())
    assert math.isclose(float(got), expected / b, rel_tol=1e-5)
    # a student that reproduces the teacher's scores (same vectors, same scale) has nothing left to learn
    assert float(similarity_distillation(teacher_cols, teacher, t_scale, t_scale)) < 1e-6


def test_similarity_distillation_refuses_a_missing_teacher_column():
    student = [torch.randn(2, 4), torch.randn(2, 4)]
    with pytest.raises(ValueError, match="label"):
        similarity_distillation(student, None, 20.0, 20.0)
    with pytest.raises(ValueError, match="teacher"):
        similarity_distillation(student, torch.randn(2, 7), 20.0, 20.0)  # 7 is not 2 columns x d_t


@pytest.mark.parametrize("directions", [("query_to_doc",), ("query_to_doc", "doc_to_query", "doc_to_doc")])
def test_distilled_mnrl_is_mnrl_plus_weighted_kl(tiny_nvembed_folder, directions):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")
    loss = DistilledMultipleNegativesRankingLoss(
        model, scale=20.0, distill_weight=0.5, teacher_scale=10.0, directions=directions
    )
    plain = MultipleNegativesRankingLoss(model, scale=20.0, directions=directions)
    torch.manual_seed(1)
    emb = [torch.randn(4, 32), torch.randn(4, 32)]
    teacher = F.normalize(torch.randn(4, 2, 6), dim=-1).reshape(4, 12)
    got = loss.compute_loss_from_embeddings(emb, teacher)
    want = plain.compute_loss_from_embeddings(emb, None) + 0.5 * similarity_distillation(emb, teacher, 20.0, 10.0)
    torch.testing.assert_close(got, want)


def test_similarity_mse_targets_absolute_similarities_that_the_kl_term_ignores():
    torch.manual_seed(2)
    b, dt = 4, 6
    teacher_cols = [F.normalize(torch.randn(b, dt), dim=-1) for _ in range(2)]
    teacher = torch.cat(teacher_cols, dim=1)
    assert float(similarity_mse(teacher_cols, teacher)) < 1e-10  # the teacher itself: nothing to learn
    # crowded student: every vector near one direction, its softmax over candidates flat-ish, cosines all ~1
    direction = torch.randn(1, dt)
    crowded = [(direction + 0.05 * torch.randn(b, dt)).requires_grad_() for _ in range(2)]
    got = similarity_mse(crowded, teacher)
    expected = torch.stack(
        [
            (
                F.normalize(crowded[0][i], dim=0) @ F.normalize(crowded[1][j], dim=0)
                - teacher_cols[0][i] @ teacher_cols[1][j]
            )
            ** 2
            for i in range(b)
            for j in range(b)
        ]
    ).mean()
    torch.testing.assert_close(got, expected)
    assert float(got.detach()) > 0.2  # cosines ~1 against a random teacher's ~0
    # one gradient step on it lowers the student's mean cosine: it spreads a crowded cone
    before = float((F.normalize(crowded[0], dim=-1) @ F.normalize(crowded[1], dim=-1).T).mean())
    got.backward()
    with torch.no_grad():
        moved = [x - 0.5 * x.grad for x in crowded]
    after = float((F.normalize(moved[0], dim=-1) @ F.normalize(moved[1], dim=-1).T).mean())
    assert after < before


@pytest.mark.parametrize(
    "weight, term",
    [
        ("similarity_weight", lambda emb, teacher: similarity_mse(emb, teacher)),
        ("passage_weight", lambda emb, teacher: passage_distillation(emb, teacher, 20.0, 10.0)),
    ],
)
def test_distilled_mnrl_adds_each_weighted_extra_term(tiny_nvembed_folder, weight, term):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")
    kl_only = DistilledMultipleNegativesRankingLoss(model, scale=20.0, distill_weight=0.5, teacher_scale=10.0)
    both = DistilledMultipleNegativesRankingLoss(
        model, scale=20.0, distill_weight=0.5, teacher_scale=10.0, **{weight: 3.0}
    )
    torch.manual_seed(3)
    emb = [torch.randn(4, 32), torch.randn(4, 32)]
    teacher = F.normalize(torch.randn(4, 2, 6), dim=-1).reshape(4, 12)
    want = kl_only.compute_loss_from_embeddings(emb, teacher) + 3.0 * term(emb, teacher)
    torch.testing.assert_close(both.compute_loss_from_embeddings(emb, teacher), want)


@pytest.mark.parametrize("key", ["distill_similarity_weight", "distill_passage_weight"])
def test_extra_distillation_terms_without_teacher_vectors_are_refused(key):
    stages = [StageConfig(tasks=["a"], max_steps=1)]
    with pytest.raises(ValueError, match=key):
        RunConfig(stages=stages, distill_weight=0.0, **{key: 1.0})
    with pytest.raises(ValueError, match=key):
        RunConfig(stages=stages, distill_weight=1.0, **{key: -1.0})
    assert getattr(RunConfig(stages=stages, distill_weight=1.0, **{key: 2.0}), key) == 2.0


def test_levers_overrides_replace_keys_and_stages():
    from eval.levers import apply_overrides

    base = RunConfig(
        stages=[StageConfig(tasks=["a"], max_steps=10, batch_size=16), StageConfig(tasks=["a", "b"], max_steps=5)]
    )
    cfg = apply_overrides(
        base, {"lora": False, "all_stages": {"batch_size": 32}, "stages": [{"max_steps": 40}, {"max_steps": 0}]}
    )
    assert cfg.lora is False and base.lora is True
    assert [(s.max_steps, s.batch_size) for s in cfg.stages] == [(40, 32)]  # max_steps 0 drops stage 2
    with pytest.raises(TypeError):
        apply_overrides(base, {"all_stages": {"no_such_key": 1}})
    with pytest.raises(TypeError):
        apply_overrides(base, {"no_such_key": 1})


def test_ood_info_tasks_parse_sections_and_keep_splits_apart(tmp_path):
    import gzip

    from eval import ood

    node = (
        "\x1f\nFile: demo.info,  Node: {node},  Next: x,  Up: Top\n\n{num} {title}\n{rule}\n\n"
        "{para}\n\n     an indented example line that is not prose at all but code\n\n* Menu:\n\n* Other::\n"
    )
    words = "files archives compress streams network clocks fonts printers kernels shells".split()
    for manual in ("alpha", "beta"):
        nodes = []
        for i in range(12):
            para = f"number {i} " + " ".join(f"{manual} {words[(i + j) % len(words)]}" for j in range(12))
            nodes.append(
                node.format(node=f"n{i}", num=f"1.{i}", title=f"{manual} section {i} title", rule="=" * 20, para=para)
            )
        (tmp_path / f"{manual}.info.gz").write_bytes(gzip.compress(("header\n" + "".join(nodes)).encode()))
    built = ood.build(tmp_path)
    sections = built["info_section"]
    assert {r["id"] for r in sections["dev"]}.isdisjoint(r["id"] for r in sections["test"])
    assert len(sections["dev"]) + len(sections["test"]) == 24
    row = sections["dev"][0]
    assert row["query"].endswith("title") and not row["query"][0].isdigit()  # numbering stripped
    assert "indented example" not in row["passage"] and "Menu" not in row["passage"]
    labels = {r["label"] for split in built["info_manual"].values() for r in split}
    assert labels == {"alpha", "beta"}
    with pytest.raises(ood.InfoManualsMissingError, match="info"):
        ood.build(tmp_path / "empty")


@pytest.mark.slow
def test_ood_tasks_share_no_text_with_any_training_task():
    from eval import ood
    from train.data import TASKS, training_pairs

    built = ood.build()
    ood_texts = {r.get("passage") or r.get("text") for split in built["info_section"].values() for r in split}
    ood_texts |= {r["text"] for split in built["info_manual"].values() for r in split}
    ood_texts |= {r["query"] for split in built["info_section"].values() for r in split}
    assert len(ood_texts) > 500
    for task in TASKS:
        pairs = training_pairs(task)
        train_texts = {
            t for column in ("anchor", "positive", "negative_1") if column in pairs.column_names for t in pairs[column]
        }
        assert not (ood_texts & train_texts), task


def test_run_monitor_writes_the_dev_curve_with_cpu_minutes_that_add_up_over_restarts(tmp_path):
    from train.monitor import RunMonitor, main_scores, read_curve

    metrics = {"eval_debian_description_cosine_ndcg@10": 0.5, "eval_debian_tags_pairs_spearman_cosine": 0.25}
    assert main_scores(metrics) == {"debian_description": 0.5, "debian_tags_pairs": 0.25}

    class State:
        global_step = 3

    first = RunMonitor(tmp_path, stage=1, steps_before=0, total_steps=10)
    first.on_evaluate(None, State(), None, metrics=metrics)
    rows = read_curve(tmp_path / "dev_curve.jsonl")
    assert rows[0]["step"] == 3 and rows[0]["mean"] == pytest.approx(0.375)
    assert (tmp_path / "dev_curve.png").is_file()
    second = RunMonitor(tmp_path, stage=2, steps_before=6, total_steps=10)  # a resumed process
    second.on_evaluate(None, State(), None, metrics=metrics)
    rows = read_curve(tmp_path / "dev_curve.jsonl")
    assert rows[1]["step"] == 9 and rows[1]["stage"] == 2
    assert rows[1]["cpu_min"] >= rows[0]["cpu_min"]  # starts from the last row, not from zero


def test_pipeline_with_eval_steps_scores_the_dev_sets_during_training(tiny_nvembed_folder, tmp_path, monkeypatch):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from test_train import SPECS, toy_pairs

    from train import monitor, pipeline
    from train.monitor import read_curve

    monkeypatch.setattr(pipeline, "training_pairs", toy_pairs)
    monkeypatch.setattr(pipeline, "task_specs", lambda: SPECS)

    labelled = [{"text": t, "label": t.split()[0]} for t in ("gzip a", "gzip b", "fox a", "fox b")]

    def tiny_evaluators(limit, **kwargs):
        return [
            InformationRetrievalEvaluator(
                queries={"q0": "gzip files", "q1": "quick fox"},
                corpus={"d0": "gzip compresses files", "d1": "the quick brown fox"},
                relevant_docs={"q0": {"d0"}, "q1": {"d1"}},
                name="debian_description",
                write_csv=False,
            ),
            monitor.ClassificationEvaluator(labelled, labelled, name="debian_section"),
        ]

    monkeypatch.setattr(monitor, "dev_evaluators", tiny_evaluators)
    cfg = RunConfig(
        output_dir=str(tmp_path / "run"),
        base_model=str(tiny_nvembed_folder),
        stages=[StageConfig(tasks=["toy_retrieval"], max_steps=4, batch_size=8, num_hard_negatives=0)],
        max_seq_length=32,
        save_steps=2,
        eval_steps=2,
        logging_steps=1,
        lora=False,
    )
    pipeline.train(cfg, tmp_path / "final")
    rows = read_curve(tmp_path / "run" / "dev_curve.jsonl")
    assert [r["step"] for r in rows] == [0, 2, 4]  # before training, then every eval_steps
    assert all(0 <= r["scores"]["debian_description"] <= 1 for r in rows)
    assert all(r["scores"]["debian_section"] in (0.0, 0.25, 0.5, 0.75, 1.0) for r in rows)  # 4 dev rows


class _LookupEncoder:
    """encode() -> fixed vectors per text, to check what an evaluator computes from them."""

    def __init__(self, vectors):
        self.vectors, self.prompts = vectors, []

    def encode(self, texts, prompt=None, **kwargs):
        self.prompts.append(prompt)
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_classification_evaluator_fits_on_the_first_rows_per_label_and_scores_dev_accuracy():
    from train.data.core import CLASSIFIER_ROWS_PER_LABEL as TRAIN_ROWS_PER_LABEL
    from train.monitor import ClassificationEvaluator

    train_rows = [{"text": f"{label}{i}", "label": label} for label in "ab" for i in range(TRAIN_ROWS_PER_LABEL + 5)]
    dev_rows = [{"text": f"dev-{label}{i}", "label": label} for label in "ab" for i in range(4)]
    evaluator = ClassificationEvaluator(train_rows, dev_rows, name="toy", prompt="Instruct: x\nQuery:\n")
    assert len(evaluator.train_rows) == 2 * TRAIN_ROWS_PER_LABEL  # the extra 5 rows per label are not fitted

    separable = {r["text"]: [1.0, 0.0] if r["label"] == "a" else [0.0, 1.0] for r in train_rows + dev_rows}
    model = _LookupEncoder(separable)
    assert evaluator(model) == {"toy_accuracy": 1.0}
    assert model.prompts == ["Instruct: x\nQuery:\n"] * 2  # train and dev texts both get the instruction

    swapped = dict(separable, **{r["text"]: separable[r["text"]][::-1] for r in dev_rows})  # dev vectors flipped
    assert evaluator(_LookupEncoder(swapped)) == {"toy_accuracy": 0.0}


def test_demo_compare_tables_every_system_with_library_evaluators(tiny_nvembed_folder, monkeypatch):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from train import demo, monitor

    seen_prompts = []

    def tiny_evaluators(limit, instructions=True, **kwargs):
        prompt = "Instruct: find it\nQuery:\n" if instructions else None
        seen_prompts.append(prompt)
        return [
            InformationRetrievalEvaluator(
                queries={"q0": "gzip files", "q1": "quick fox"},
                corpus={"d0": "gzip compresses files", "d1": "the quick brown fox"},
                relevant_docs={"q0": {"d0"}, "q1": {"d1"}},
                query_prompt=prompt,
                name="debian_description",
                write_csv=False,
            )
        ]

    monkeypatch.setattr(monitor, "dev_evaluators", tiny_evaluators)
    load = lambda: SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")  # noqa: E731
    table = demo.compare({"with": (load, True), "without": (load, False)}, limit=2, max_seq_length=32)
    assert seen_prompts == ["Instruct: find it\nQuery:\n", None]
    for row in table.values():
        assert set(row) == {"debian_description", "mean"} and row["mean"] == row["debian_description"]
        assert 1 / math.log2(3) - 1e-6 <= row["debian_description"] <= 1.0  # two candidates: rank 1 or 2
    md = demo.markdown_table(table)
    assert md.splitlines()[0] == "| system | debian_description | mean |" and "| with |" in md


def test_card_results_name_metric_and_task_type_per_dev_task():
    from train.monitor import card_results

    results = card_results(
        {"debian_description": 0.8, "info_section": 0.5, "debian_tags_pairs": 0.4, "debian_section": 0.6}
    )
    assert results["info_section"] == {
        "metric": "ndcg_at_10",
        "value": 0.5,
        "dataset_split": "dev",
        "task_type": "Retrieval",
    }
    assert results["debian_tags_pairs"]["metric"] == "cosine_spearman"
    assert results["debian_tags_pairs"]["task_type"] == "STS"
    assert results["debian_section"]["metric"] == "accuracy"
    assert results["debian_section"]["task_type"] == "Classification"


def test_distillation_with_cached_loss_is_refused_before_any_data_work(monkeypatch):
    from train import pipeline

    def no_data(task, label_negatives=1):
        raise AssertionError("training data was read before the config was checked")

    monkeypatch.setattr(pipeline, "training_pairs", no_data)
    stage = StageConfig(tasks=["debian_description"], max_steps=1)
    cfg = RunConfig(stages=[stage], distill_weight=1.0, cached_loss=True)
    with pytest.raises(ValueError, match="cached_loss: false"):
        pipeline.stage_datasets(stage, cfg, miner=None)


def test_shipped_levers_yaml_loads_every_variant():
    from eval.levers import load_levers

    levers = load_levers("train/configs/levers.yaml")
    assert levers.reference in levers.variants and levers.eval_max_rows == 250
    assert levers.variants["demo-top8"].train_layers == 8 and levers.variants["demo"].train_layers is None
    assert levers.variants["recipe+distill"].distill_weight == 1.0 and levers.variants["recipe"].distill_weight == 0
    assert {"raw-mean", "minilm"} <= set(levers.baselines)


def test_curve_markdown_has_a_row_per_evaluation_and_a_dash_for_a_task_not_scored():
    from train.monitor import curve_markdown

    rows = [
        {"step": 0, "stage": 1, "cpu_min": 0.5, "scores": {"a": 0.25}, "mean": 0.25},
        {"step": 40, "stage": 1, "cpu_min": 10.3, "scores": {"a": 0.5, "b": 0.7}, "mean": 0.6},
    ]
    lines = curve_markdown(rows).splitlines()
    assert lines[0] == "| step | stage | CPU-min | a | b | mean |"
    assert lines[2] == "| 0 | 1 | 0.5 | 25.0 | - | 25.0 |"
    assert lines[3] == "| 40 | 1 | 10.3 | 50.0 | 70.0 | 60.0 |"


def test_demo_scores_the_baselines_only_when_asked(tmp_path):
    from train.demo import demo_systems

    default = demo_systems(tmp_path / "base", tmp_path / "final")
    assert list(default) == ["NV-Embed, trained (this demo)", "all-MiniLM-L6-v2 (bundled peer)"]
    assert [uses_instruction for _, uses_instruction in default.values()] == [True, False]
    full = demo_systems(tmp_path / "base", tmp_path / "final", baselines=True)
    assert list(full)[:2] == ["SmolLM2-135M, mean pooling (raw)", "NV-Embed, converted, untrained"]
    assert list(full)[2:] == list(default)


def test_the_card_of_a_trained_folder_carries_its_recipe(tiny_nvembed_folder, tmp_path):
    import json
    import shutil

    from train.pipeline import write_card

    folder = shutil.copytree(tiny_nvembed_folder, tmp_path / "model")
    cfg = RunConfig(
        output_dir=str(tmp_path / "run"),
        lora=False,
        distill_weight=1.0,
        stages=[
            StageConfig(tasks=["debian_description"], max_steps=24, learning_rate=2.0e-4),
            StageConfig(tasks=["debian_description", "debian_section"], max_steps=12, learning_rate=1.5e-4),
        ],
    )
    command = "python -m train.pipeline my.yaml --final-dir model"
    write_card(
        folder, cfg, eval_results={"debian_description": {"metric": "ndcg_at_10", "value": 0.9}}, command=command
    )
    saved = json.loads((folder / "training_config.json").read_text())
    assert saved["command"] == command
    assert [s["learning_rate"] for s in saved["stages"]] == [2.0e-4, 1.5e-4]
    assert saved["distill_weight"] == 1.0 and "lora_rank" not in saved  # LoRA's keys only when it is on
    card = (folder / "README.md").read_text()
    assert "0.00015" in card and "debian_section" in card  # stage 2's rate and task list are in the card
    assert f"### Command\n\n```bash\n{command}\n```" in card
    # The paper's recipe (T 0.01, LoRA) is described only for a folder without a training record, never beside a
    # run's own settings that contradict it.
    assert "temperature 0.01" not in card and "LoRA (rank 16" not in card


def test_the_card_command_is_the_command_line_as_given(monkeypatch):
    from train.pipeline import invocation

    assert invocation("train.demo", []) == "python -m train.demo"
    assert invocation("train.pipeline", ["my runs/a.yaml", "--final-dir", "out"]) == (
        "python -m train.pipeline 'my runs/a.yaml' --final-dir out"  # quoted so that it can be pasted back
    )
    monkeypatch.setattr("sys.argv", ["/abs/train/pipeline.py", "train/configs/train.yaml"])
    assert invocation("train.pipeline", None) == "python -m train.pipeline train/configs/train.yaml"


def test_passage_distillation_is_the_kl_over_the_other_passages():
    torch.manual_seed(5)
    b, d, dt = 3, 8, 6
    emb = [torch.randn(b, d, requires_grad=True) for _ in range(3)]  # anchor, positive, negative_1
    teacher = F.normalize(torch.randn(b, 3, dt), dim=-1)
    got = passage_distillation(emb, teacher.reshape(b, 3 * dt), scale=20.0, teacher_scale=10.0)
    # the passages in MNRL's order: all positives, then all first negatives
    s = F.normalize(torch.cat(emb[1:]), dim=-1)
    t = torch.cat([teacher[:, 1], teacher[:, 2]])
    expected = 0.0
    for i in range(2 * b):
        others = [j for j in range(2 * b) if j != i]
        p = torch.softmax(torch.stack([t[i] @ t[j] * 10.0 for j in others]), 0)
        log_q = torch.log_softmax(torch.stack([s[i] @ s[j] * 20.0 for j in others]), 0)
        expected = expected + (p * (p.log() - log_q)).sum()
    torch.testing.assert_close(got, (expected / (2 * b)).detach())
    assert torch.isfinite(got) and float(got) > 0
    got.backward()  # finite gradients despite the masked diagonal; the anchors take no part
    assert all(torch.isfinite(x.grad).all() for x in emb[1:]) and emb[0].grad is None
    # a student that already has the teacher's geometry (same vectors, same temperature) has nothing to learn
    same = passage_distillation([x.clone() for x in teacher.unbind(1)], teacher.reshape(b, 3 * dt), 10.0, 10.0)
    assert float(same) < 1e-6


def test_train_only_trains_the_named_variants_and_scores_none(tmp_path, monkeypatch):
    import eval.compare
    import eval.levers as levers

    (tmp_path / "levers.yaml").write_text(
        "base: train/configs/demo.yaml\nvariants:\n  a: {}\n  b: {distill_weight: 3.0}\n"
    )
    trained = []
    monkeypatch.setattr(levers, "eval_data", lambda rows: tmp_path / "eval")
    monkeypatch.setattr(levers, "train_variant", lambda cfg, final: trained.append((cfg, final)) or {})
    monkeypatch.setattr(eval.compare, "compare", lambda *a, **k: pytest.fail("--train-only must not score"))
    out = tmp_path / "out"
    argv = ["--config", str(tmp_path / "levers.yaml"), "--output-dir", str(out), "--only", "b", "--train-only"]
    assert levers.main(argv) == 0
    assert [(c.distill_weight, f) for c, f in trained] == [(3.0, out / "b" / "final")]
    assert not (out / "levers.md").exists()
    with pytest.raises(SystemExit):  # nothing named: refused rather than training every variant
        levers.main(["--config", str(tmp_path / "levers.yaml"), "--train-only"])


def test_each_variant_trains_in_a_process_of_its_own_on_its_written_config(tmp_path, monkeypatch):
    import sys

    import eval.levers as levers
    from train.config import load_config

    cfg = levers.load_levers("train/configs/levers.yaml").variants["demo-passage"]
    cfg.output_dir = str(tmp_path / "demo-passage")
    calls = []
    monkeypatch.setattr(levers, "run_child", calls.append)
    timing = levers.train_variant(cfg, tmp_path / "demo-passage" / "final")
    config = tmp_path / "demo-passage" / "run_config.yaml"
    assert calls == [
        [sys.executable, "-m", "train.pipeline", str(config), "--final-dir", str(tmp_path / "demo-passage" / "final")]
    ]
    assert load_config(config) == cfg  # the child trains exactly this variant
    assert set(timing) == {"train_wall_min", "train_cpu_min"}


def test_a_cached_conversion_made_with_other_arguments_is_refused(tiny_causal_lm, tmp_path):
    from train.pipeline import prepare_base_model

    def config(**overrides):
        return RunConfig(
            base_model=str(tiny_causal_lm),
            output_dir=str(tmp_path),
            num_latents=16,
            stages=[StageConfig(tasks=["debian_description"])],
            **overrides,
        )

    base = prepare_base_model(config())
    weights = (base / "model.safetensors").stat().st_mtime_ns
    assert prepare_base_model(config()) == base  # resumed with the same config: the cached base, not reconverted
    assert (base / "model.safetensors").stat().st_mtime_ns == weights
    with pytest.raises(ValueError, match="num_layers: None there, 1 in the config"):
        prepare_base_model(config(backbone_layers=1))
    with pytest.raises(ValueError, match="latent_init: 'identity' there, 'random' in the config"):
        prepare_base_model(config(latent_init="random"))


def test_demo_expects_its_time_from_this_machines_speed():
    from train.demo import MEASURED_TRAIN, MEASURED_TRAIN_BF16, expected_minutes

    measured = {"minutes": 12.0, "gflops": 150, "where": "x"}
    assert expected_minutes(150, measured) == 12.0
    assert expected_minutes(300, measured) == 6.0  # twice as fast a machine: half the time
    assert expected_minutes(MEASURED_TRAIN["gflops"]) == MEASURED_TRAIN["minutes"]
    # a bf16 host is timed from the bf16 measurement, which is faster at the same fp32 matmul speed
    assert expected_minutes(150, MEASURED_TRAIN_BF16) < expected_minutes(150, MEASURED_TRAIN)
    with pytest.raises(ValueError, match="gflops"):
        expected_minutes(0)


def test_the_bf16_key_decides_and_auto_asks_the_hardware(monkeypatch):
    """train.demo's time estimate and run_stage's training arguments read the same decision."""
    import train.pipeline as pipeline

    def config(bf16):
        return RunConfig(bf16=bf16, stages=[StageConfig(tasks=["debian_description"])])

    asked = []
    monkeypatch.setattr(pipeline, "bf16_available", lambda device: asked.append(device) or device == "cuda")
    assert pipeline.uses_bf16(config("auto"), "cuda") and not pipeline.uses_bf16(config("auto"), "cpu")
    assert asked == ["cuda", "cpu"]
    assert pipeline.uses_bf16(config(True), "cpu") and not pipeline.uses_bf16(config(False), "cuda")
    assert asked == ["cuda", "cpu"]  # an explicit key does not ask


def test_stopping_the_levers_runner_stops_its_training_child(tmp_path):
    """`kill PID` of `eval.levers` must not leave the variant's training running (it would race a restarted copy)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    runner = f"import sys; from eval.levers import run_child; run_child([sys.executable, '-c', {child!r}])"
    parent = subprocess.Popen([sys.executable, "-c", runner])
    deadline = time.time() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) != 0
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the training child outlived its stopped parent")


def test_a_failing_training_child_fails_the_levers_runner():
    import subprocess
    import sys

    from eval.levers import run_child

    with pytest.raises(subprocess.CalledProcessError):
        run_child([sys.executable, "-c", "raise SystemExit(3)"])
