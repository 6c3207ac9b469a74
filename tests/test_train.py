"""The two-stage training pipeline on a tiny random backbone and hand-made data (seconds)."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from transformers import TrainerCallback

from modeling_nvembed import format_instruction
from train import pipeline
from train.config import RunConfig, StageConfig, load_config
from train.losses import DistilledHardNegativesOnlyRankingLoss, HardNegativesOnlyRankingLoss


WORDS = (
    "gzip fox library parse email network clock sync python deflate quick lazy command option message daemon".split()
)


@dataclass
class Spec:
    kind: str
    instruction: str


SPECS = {
    "toy_retrieval": Spec("retrieval", "Given a query, retrieve the passage"),
    "toy_classes": Spec("classification", "Classify the text"),
}


def toy_pairs(task: str, label_negatives: int = 1) -> Dataset:
    rng = torch.Generator().manual_seed(0)
    rows = []
    for i in range(48):
        words = [WORDS[j] for j in torch.randint(0, len(WORDS), (4,), generator=rng).tolist()]
        rows.append({"anchor": f"{i} " + " ".join(words[:2]), "positive": f"{i} " + " ".join(words), "task": task})
    if SPECS[task].kind != "retrieval":
        for i, row in enumerate(rows):
            for k in range(1, label_negatives + 1):
                row[f"negative_{k}"] = rows[(i + k) % len(rows)]["positive"]
    return Dataset.from_list(rows)


@pytest.fixture()
def toy_data(monkeypatch):
    monkeypatch.setattr(pipeline, "training_pairs", toy_pairs)
    monkeypatch.setattr(pipeline, "task_specs", lambda: SPECS)


def run_config(tmp_path, base, **overrides) -> RunConfig:
    values = dict(
        output_dir=str(tmp_path / "run"),
        base_model=str(base),
        stages=[
            StageConfig(tasks=["toy_retrieval"], max_steps=6, batch_size=8, learning_rate=3e-3, num_hard_negatives=0),
            StageConfig(
                tasks=["toy_retrieval", "toy_classes"],
                max_steps=4,
                batch_size=8,
                learning_rate=1e-3,
                num_hard_negatives=0,
            ),
        ],
        max_seq_length=32,
        save_steps=2,
        logging_steps=1,
        lora_rank=4,
        lora_alpha=8,
    )
    values.update(overrides)
    return RunConfig(**values)


def test_two_stages_train_and_loss_falls(tiny_nvembed_folder, toy_data, tmp_path):
    cfg = run_config(tmp_path, tiny_nvembed_folder)
    cfg.stages[0].max_steps = 12
    final = pipeline.train(cfg)
    log = [json.loads(line) for line in (Path(cfg.output_dir) / "stage1" / "loss_log.jsonl").read_text().splitlines()]
    first, last = log[0]["loss"], sum(r["loss"] for r in log[-3:]) / 3
    assert last < first, (first, last)
    assert (Path(cfg.output_dir) / "stage1" / "loss.png").is_file()
    assert (Path(cfg.output_dir) / "stage2" / "done.json").is_file()
    # The merged result is a plain NV-Embed folder: no LoRA weights left, loads with AutoModel and ST
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    keys = load_file(str(final / "model.safetensors")).keys()
    assert not any("lora" in k or "base_layer" in k for k in keys)
    auto = AutoModel.from_pretrained(final, trust_remote_code=True)
    st = SentenceTransformer(str(final), trust_remote_code=True, device="cpu")
    prompt = st.prompts["toy_retrieval"]
    assert (
        st.encode(["gzip fox"], prompt=prompt, convert_to_tensor=True) - auto.encode(["gzip fox"], instruction=prompt)
    ).abs().max() <= 1e-5


def test_a_finished_stage_frees_its_optimizer_before_the_next_stage(
    tiny_nvembed_folder, toy_data, tmp_path, monkeypatch
):
    """Each stage's trainer (AdamW state: twice the trained weights) is gone when the next stage starts; it used to
    live on in reference cycles beside the next one's (the demo's RSS rose 9.0 -> 12.8 GB at the stage change)."""
    import gc
    import weakref

    optimizers, alive_at_start = [], []
    original = pipeline.NVEmbedTrainer.train

    def train(self, *args, **kwargs):
        alive_at_start.append([ref() is not None for ref in optimizers])
        result = original(self, *args, **kwargs)
        optimizers.append(weakref.ref(self.optimizer))
        return result

    monkeypatch.setattr(pipeline.NVEmbedTrainer, "train", train)
    gc.disable()  # only the pipeline's own collection may free the cycles
    try:
        pipeline.train(run_config(tmp_path, tiny_nvembed_folder))
    finally:
        gc.enable()
    assert len(optimizers) == 2 and alive_at_start == [[], [False]]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="glibc's malloc_trim: Linux only")
def test_release_freed_memory_hands_a_fragmented_heap_back():
    """Freed heap pages between live blocks stay resident until `malloc_trim`: the stage change releases them."""
    import psutil

    process = psutil.Process()
    blocks = [bytearray(8192) for _ in range(40_000)]  # ~330 MB in heap blocks (below glibc's mmap threshold)
    keep = blocks[::16]  # every 16th stays alive, so the heap's top cannot shrink by itself
    del blocks
    before = process.memory_info().rss
    pipeline.release_freed_memory()
    after = process.memory_info().rss
    assert len(keep) == 2500 and before - after > 150 * 2**20, (before, after)


def test_stage2_loss_matches_hand_computed_infonce_without_in_batch_negatives(tiny_nvembed_folder, tmp_path):
    """-log softmax over (positive, negatives) of each anchor's own row, at scale 1 / temperature, by hand."""
    model = pipeline.load_for_training(tiny_nvembed_folder, run_config(tmp_path, tiny_nvembed_folder), "cpu")
    loss = HardNegativesOnlyRankingLoss(model, scale=1.0 / 0.5)  # temperature 0.5: scale 2
    # Norms differ from 1 on purpose (the loss is cosine). Cosines to each anchor, read off the 2-d vectors:
    anchor = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    positive = torch.tensor([[0.6, 0.8], [1.6, 1.2]])  # cos 0.6 and 0.6
    negative_1 = torch.tensor([[0.0, 5.0], [3.0, 4.0]])  # cos 0.0 and 0.8
    negative_2 = torch.tensor([[-1.0, 0.0], [0.0, -2.0]])  # cos -1.0 and -1.0
    # Row 1's positive has cos 0.8 with row 0's anchor: as an in-batch negative it would raise row 0's loss.
    cosines = [(0.6, 0.0, -1.0), (0.6, 0.8, -1.0)]
    by_hand = sum(-2 * c[0] + math.log(sum(math.exp(2 * x) for x in c)) for c in cosines) / 2
    value = loss.compute_loss_from_embeddings([anchor, positive, negative_1, negative_2], None)
    assert value.item() == pytest.approx(by_hand, rel=1e-5)
    wrong_column = sum(-2 * c[1] + math.log(sum(math.exp(2 * x) for x in c)) for c in cosines) / 2
    assert abs(by_hand - wrong_column) > 0.3  # so the check above tells the columns apart
    in_batch = MultipleNegativesRankingLoss(model, scale=2.0)
    assert (
        in_batch.compute_loss_from_embeddings([anchor, positive, negative_1, negative_2], None).item() > by_hand + 0.1
    )
    assert loss.scale == 2.0 and loss.model is model
    with pytest.raises(ValueError, match="negative"):
        loss.compute_loss_from_embeddings([anchor, positive], None)


def softmax(scores: list[float]) -> list[float]:
    total = sum(math.exp(x) for x in scores)
    return [math.exp(x) / total for x in scores]


def kl_divergence(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_distilled_stage2_loss_matches_hand_computed_infonce_plus_kl(tiny_nvembed_folder, tmp_path):
    """The loss demo.yaml and train.yaml give non-retrieval tasks in stage 2: each anchor's own-row InfoNCE (as above)
    + distill_weight * KL(teacher softmax || student softmax) over every candidate of the batch, by hand."""
    model = pipeline.load_for_training(tiny_nvembed_folder, run_config(tmp_path, tiny_nvembed_folder), "cpu")
    loss = DistilledHardNegativesOnlyRankingLoss(model, scale=2.0, distill_weight=0.5, teacher_scale=4.0)
    anchor = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    positive = torch.tensor([[0.6, 0.8], [1.6, 1.2]])
    negative_1 = torch.tensor([[0.0, 5.0], [3.0, 4.0]])
    # Teacher vectors (3-d, unit length), each row's (anchor, positive, negative_1) concatenated: the `label` column
    teacher = torch.tensor(
        [
            [1.0, 0.0, 0.0] + [0.0, 1.0, 0.0] + [0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0] + [0.6, 0.8, 0.0] + [0.0, 0.6, 0.8],
        ]
    )
    # The batch's candidates in MNRL's order: positive 0, positive 1, negative_1 0, negative_1 1. Cosines to each
    # anchor, read off the vectors above (student) and dot products of the teacher's:
    student = [(0.6, 0.8, 0.0, 0.6), (0.8, 0.6, 1.0, 0.8)]
    teacher_scores = [(0.0, 0.6, 0.0, 0.0), (1.0, 0.8, 0.0, 0.6)]
    own_rows = [(0.6, 0.0), (0.6, 0.8)]  # each anchor's own (positive, negative_1)
    infonce = sum(-2 * c[0] + math.log(sum(math.exp(2 * x) for x in c)) for c in own_rows) / 2

    def kl(student_scale: float, teacher_scale: float) -> float:
        return sum(
            kl_divergence(softmax([teacher_scale * x for x in t]), softmax([student_scale * x for x in s]))
            for s, t in zip(student, teacher_scores)
        ) / len(student)

    by_hand = infonce + 0.5 * kl(2.0, 4.0)
    value = loss.compute_loss_from_embeddings([anchor, positive, negative_1], teacher)
    assert value.item() == pytest.approx(by_hand, rel=1e-5)
    # The check tells the terms apart: the KL term is not small, and swapped temperatures or the reverse KL give
    # other values
    assert 0.5 * kl(2.0, 4.0) > 0.1
    assert abs(by_hand - (infonce + 0.5 * kl(4.0, 2.0))) > 0.01
    reverse = sum(
        kl_divergence(softmax([2 * x for x in s]), softmax([4 * x for x in t]))
        for s, t in zip(student, teacher_scores)
    ) / len(student)
    assert abs(by_hand - (infonce + 0.5 * reverse)) > 0.01
    assert loss.compute_loss_from_embeddings([anchor, positive, negative_1], teacher).item() == pytest.approx(
        HardNegativesOnlyRankingLoss(model, scale=2.0)
        .compute_loss_from_embeddings([anchor, positive, negative_1], None)
        .item()
        + 0.5 * kl(2.0, 4.0),
        rel=1e-5,
    )
    with pytest.raises(ValueError, match="label"):
        loss.compute_loss_from_embeddings([anchor, positive, negative_1], None)


@pytest.mark.parametrize("cached_loss", [False, True])
@pytest.mark.parametrize("in_batch_for_non_retrieval", [False, True])
def test_pipeline_picks_each_task_kinds_loss(
    tiny_nvembed_folder, tmp_path, monkeypatch, cached_loss, in_batch_for_non_retrieval
):
    specs = {
        "toy_retrieval": Spec("retrieval", "Given a query, retrieve the passage"),
        "toy_classes": Spec("classification", "Classify the text"),
        "toy_clusters": Spec("clustering", "Cluster the text"),
        "toy_sts": Spec("sts", "Retrieve semantically similar text"),
    }
    monkeypatch.setattr(pipeline, "task_specs", lambda: specs)
    monkeypatch.setattr(
        pipeline,
        "training_pairs",
        lambda task, label_negatives=1: toy_pairs("toy_classes" if task != "toy_retrieval" else task),
    )
    cfg = run_config(tmp_path, tiny_nvembed_folder, temperature=0.02, cached_loss=cached_loss, mini_batch_size=3)
    miner = pipeline.Miner(pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu"), cfg, "cpu")
    stage = StageConfig(
        tasks=list(specs), num_hard_negatives=0, in_batch_negatives_for_non_retrieval=in_batch_for_non_retrieval
    )
    _, losses, prompts = pipeline.stage_datasets(stage, cfg, miner)
    in_batch = CachedMultipleNegativesRankingLoss if cached_loss else MultipleNegativesRankingLoss
    non_retrieval = in_batch if in_batch_for_non_retrieval else HardNegativesOnlyRankingLoss
    expected = {
        "toy_retrieval": in_batch,
        "toy_classes": non_retrieval,
        "toy_clusters": non_retrieval,
        "toy_sts": non_retrieval,
    }
    assert {task: type(loss) for task, loss in losses.items()} == expected  # exact types: the subclass is an MNRL
    for loss in losses.values():
        assert loss.scale == pytest.approx(50.0) and loss.model is miner.student
        if isinstance(loss, CachedMultipleNegativesRankingLoss):
            assert loss.mini_batch_size == 3
    assert prompts["toy_sts"] == {"anchor": format_instruction("Retrieve semantically similar text")}


@pytest.mark.parametrize("cached_loss", [False, True])
def test_directions_reach_the_in_batch_ranking_loss_only(tiny_nvembed_folder, tmp_path, monkeypatch, cached_loss):
    specs = {
        "toy_retrieval": Spec("retrieval", "Given a query, retrieve the passage"),
        "toy_classes": Spec("classification", "Classify"),
    }
    monkeypatch.setattr(pipeline, "task_specs", lambda: specs)
    monkeypatch.setattr(pipeline, "training_pairs", lambda task, label_negatives=1: toy_pairs(task))
    terms = ["query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc"]
    cfg = run_config(
        tmp_path,
        tiny_nvembed_folder,
        cached_loss=cached_loss,
        directions=terms,
        hardness_mode="in_batch_negatives",
        hardness_strength=9.0,
    )
    miner = pipeline.Miner(pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu"), cfg, "cpu")
    _, losses, _ = pipeline.stage_datasets(StageConfig(tasks=list(specs), num_hard_negatives=0), cfg, miner)
    assert losses["toy_retrieval"].directions == tuple(terms)
    assert (losses["toy_retrieval"].hardness_mode, losses["toy_retrieval"].hardness_strength) == (
        "in_batch_negatives",
        9.0,
    )
    assert isinstance(losses["toy_classes"], HardNegativesOnlyRankingLoss)  # its own candidates only: no directions


@pytest.mark.parametrize(
    "directions, match",
    [
        (["doc_to_doc"], "including 'query_to_doc'"),
        (["query_to_doc", "sideways"], "directions must be a list"),
        ("query_to_doc", "directions must be a list"),
        (["query_to_doc", "doc_to_query", "doc_to_query"], "twice"),
    ],
)
def test_bad_directions_are_refused(directions, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(directions=directions, stages=[StageConfig(tasks=["debian_description"])])


@pytest.mark.parametrize(
    "mode, strength", [("sideways", 9.0), ("in_batch_negatives", 0.0), (None, 9.0), ("hard_negatives", -1.0)]
)
def test_bad_hardness_weighting_is_refused(mode, strength):
    with pytest.raises(ValueError, match="hardness"):
        RunConfig(hardness_mode=mode, hardness_strength=strength, stages=[StageConfig(tasks=["debian_description"])])


def test_label_negatives_give_classification_rows_that_many_negative_columns(tmp_path, tiny_nvembed_folder, toy_data):
    cfg = run_config(tmp_path, tiny_nvembed_folder)
    miner = pipeline.Miner(pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu"), cfg, "cpu")
    stage = StageConfig(tasks=["toy_retrieval", "toy_classes"], num_hard_negatives=0, label_negatives=3)
    datasets, losses, _ = pipeline.stage_datasets(stage, cfg, miner)
    assert datasets["toy_classes"].column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert datasets["toy_retrieval"].column_names == ["anchor", "positive"]
    assert type(losses["toy_classes"]) is HardNegativesOnlyRankingLoss
    with pytest.raises(ValueError, match="label_negatives must be >= 1"):
        StageConfig(tasks=["toy_classes"], label_negatives=0)


def test_per_task_example_caps_set_each_tasks_rows(tmp_path, tiny_nvembed_folder, toy_data):
    cfg = run_config(tmp_path, tiny_nvembed_folder)
    miner = pipeline.Miner(pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu"), cfg, "cpu")
    tasks = ["toy_retrieval", "toy_classes"]
    uncapped, _, _ = pipeline.stage_datasets(StageConfig(tasks=tasks, num_hard_negatives=0), cfg, miner)
    assert min(len(d) for d in uncapped.values()) >= 4
    caps = {"toy_retrieval": 2, "toy_classes": 3}
    stage = StageConfig(tasks=tasks, num_hard_negatives=0, max_examples_per_task=caps)
    datasets, _, _ = pipeline.stage_datasets(stage, cfg, miner)
    assert {task: len(d) for task, d in datasets.items()} == caps
    assert datasets["toy_classes"]["anchor"] == uncapped["toy_classes"]["anchor"][:3]  # the first rows, as with an int
    with pytest.raises(ValueError, match="every task of the stage"):
        StageConfig(tasks=tasks, max_examples_per_task={"toy_retrieval": 2})
    with pytest.raises(ValueError, match="integers >= 1"):
        StageConfig(tasks=tasks, max_examples_per_task={"toy_retrieval": 2, "toy_classes": 0})


def test_a_stage_max_seq_length_truncates_that_stage_only(tiny_nvembed_folder, toy_data, tmp_path, monkeypatch):
    """Stage 2 at 3 tokens per text, stage 1 at the run's 32: the batches the loss sees are cut accordingly."""
    cfg = run_config(tmp_path, tiny_nvembed_folder)
    cfg.stages[0].max_steps, cfg.stages[1].max_steps, cfg.stages[1].max_seq_length = 2, 2, 3
    widths = {}  # stage index -> widest input_ids of its batches
    original = pipeline.NVEmbedTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        stage = 1 if Path(self.args.output_dir).name == "stage1" else 2
        width = max(v.shape[1] for k, v in inputs.items() if k.endswith("input_ids"))
        widths[stage] = max(widths.get(stage, 0), width)
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(pipeline.NVEmbedTrainer, "compute_loss", spy)
    pipeline.train(cfg)
    assert widths[1] > 3 and widths[2] <= 3, widths
    card_stages = pipeline.card_training_config(cfg)["stages"]
    assert [s["max_seq_length"] for s in card_stages] == [32, 3]
    with pytest.raises(ValueError, match="max_seq_length must be >= 1"):
        StageConfig(tasks=["toy_classes"], max_seq_length=0)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated kill")


def test_resume_continues_from_checkpoint_with_same_state(tiny_nvembed_folder, toy_data, tmp_path, monkeypatch):
    stage = StageConfig(tasks=["toy_retrieval"], max_steps=6, batch_size=8, learning_rate=3e-3, num_hard_negatives=0)
    straight = run_config(tmp_path / "a", tiny_nvembed_folder, stages=[stage])
    pipeline.train(straight)

    interrupted = run_config(tmp_path / "b", tiny_nvembed_folder, stages=[stage])
    original_init = pipeline.NVEmbedTrainer.__init__

    def init_with_kill(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(StopAt(5))  # on_step_end runs before that step's save: checkpoint-4 is the last

    monkeypatch.setattr(pipeline.NVEmbedTrainer, "__init__", init_with_kill)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train(interrupted)
    monkeypatch.setattr(pipeline.NVEmbedTrainer, "__init__", original_init)
    assert (Path(interrupted.output_dir) / "stage1" / "checkpoint-4").is_dir()
    resumed_steps = []

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            resumed_steps.append(state.global_step)

    def init_with_record(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(Record())

    monkeypatch.setattr(pipeline.NVEmbedTrainer, "__init__", init_with_record)
    pipeline.train(interrupted)
    assert resumed_steps == [4]
    assert json.loads((Path(interrupted.output_dir) / "stage1" / "done.json").read_text())["global_step"] == 6
    from safetensors.torch import load_file

    a = load_file(str(Path(straight.output_dir) / "stage1" / "final" / "model.safetensors"))
    b = load_file(str(Path(interrupted.output_dir) / "stage1" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_mining_never_returns_positive_or_duplicates(tmp_path):
    from sentence_transformers import SentenceTransformer

    from nvembed_defaults import peer_model_path

    rows = [{"anchor": f"how to {w} files", "positive": f"{w} is a tool to {w} files quickly"} for w in WORDS]
    rows += [{"anchor": "how to gzip files", "positive": "gzip is a tool to gzip files quickly"}]  # duplicate pair
    data = Dataset.from_list(rows)
    cfg = RunConfig(
        output_dir=str(tmp_path), mining_cache_dir=str(tmp_path / "mined"), stages=[StageConfig(tasks=["x"])]
    )
    miner = pipeline.Miner(SentenceTransformer(str(peer_model_path()), device="cpu"), cfg, "cpu")
    mined = pipeline.mine_negatives(data, "toy", 3, cfg, miner)
    negatives = [c for c in mined.column_names if c.startswith("negative")]
    assert negatives
    for row in mined:
        values = [row[c] for c in negatives]
        assert row["positive"] not in values
        assert len(set(values)) == len(values)


def test_unknown_config_key_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [{tasks: [a]}]\nlearning_rte: 0.1\n")
    with pytest.raises(ValueError, match="learning_rte"):
        load_config(path)
    path.write_text("stages: [{tasks: [a], batchsize: 3}]\n")
    with pytest.raises(ValueError, match="batchsize"):
        load_config(path)


def test_unknown_task_and_bad_data_are_refused_before_training(tiny_nvembed_folder, toy_data, tmp_path, monkeypatch):
    cfg = run_config(tmp_path, tiny_nvembed_folder)
    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    miner = pipeline.Miner(model, cfg, "cpu")
    with pytest.raises(ValueError, match="Unknown task 'nope'"):
        pipeline.stage_datasets(StageConfig(tasks=["nope"]), cfg, miner)
    monkeypatch.setattr(pipeline, "training_pairs", lambda task, label_negatives=1: toy_pairs(task).select([]))
    with pytest.raises(ValueError, match="empty"):
        pipeline.stage_datasets(StageConfig(tasks=["toy_retrieval"], num_hard_negatives=0), cfg, miner)
    monkeypatch.setattr(
        pipeline, "training_pairs", lambda task, label_negatives=1: toy_pairs(task).remove_columns(["positive"])
    )
    with pytest.raises(ValueError, match="no 'positive' column"):
        pipeline.stage_datasets(StageConfig(tasks=["toy_retrieval"], num_hard_negatives=0), cfg, miner)


def test_batch_too_large_for_memory_is_refused(tiny_nvembed_folder, tmp_path):
    from configuration_nvembed import NVEmbedConfig

    text_config = NVEmbedConfig.from_pretrained(tiny_nvembed_folder).text_config
    cfg = run_config(tmp_path, tiny_nvembed_folder, max_seq_length=10**6)
    with pytest.raises(ValueError, match=r"more than 80% of the .* GiB free .*cached_loss"):
        pipeline.check_memory(StageConfig(batch_size=4096), cfg, "cpu", 3, text_config)
    pipeline.check_memory(StageConfig(batch_size=8), run_config(tmp_path, tiny_nvembed_folder), "cpu", 3, text_config)


def changed_weights(cfg: RunConfig, final: Path) -> dict[str, bool]:
    """For each weight of the final model: does it differ from the model training started from?"""
    from safetensors.torch import load_file

    base = load_file(str(pipeline.prepare_base_model(cfg) / "model.safetensors"))
    after = load_file(str(final / "model.safetensors"))
    assert base.keys() == after.keys()
    return {key: not torch.equal(base[key], after[key]) for key in base}


def test_cached_loss_checkpointing_and_full_fine_tuning_take_effect(tiny_causal_lm, toy_data, tmp_path, monkeypatch):
    """Causal mask + mean pooling + cached loss + full fine-tuning + one stage: each switch acts in training."""
    import transformers.modeling_utils

    calls = {"cached": 0, "plain": 0, "checkpoint": 0}
    seen_checkpointing = []

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        CachedMultipleNegativesRankingLoss, "forward", counting("cached", CachedMultipleNegativesRankingLoss.forward)
    )
    monkeypatch.setattr(
        MultipleNegativesRankingLoss, "forward", counting("plain", MultipleNegativesRankingLoss.forward)
    )
    # gradient_checkpointing_enable binds this function; it runs once per checkpointed decoder layer and forward
    monkeypatch.setattr(
        transformers.modeling_utils, "checkpoint", counting("checkpoint", transformers.modeling_utils.checkpoint)
    )

    class Inspect(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            backbone = model[0].model.embedding_model
            seen_checkpointing.append([layer.gradient_checkpointing for layer in backbone.layers])

    original_init = pipeline.NVEmbedTrainer.__init__

    def init_with_inspect(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(Inspect())

    monkeypatch.setattr(pipeline.NVEmbedTrainer, "__init__", init_with_inspect)
    stage = StageConfig(tasks=["toy_retrieval"], max_steps=2, batch_size=8, learning_rate=1e-3, num_hard_negatives=0)
    cfg = run_config(
        tmp_path,
        tiny_causal_lm,
        stages=[stage],
        mask_type="c",
        pooling_mode="mean",
        cached_loss=True,
        mini_batch_size=4,
        lora=False,
        gradient_checkpointing=True,
    )
    final = pipeline.train(cfg)
    config = json.loads((final / "config.json").read_text())
    assert config["mask_type"] == "c" and config["pooling_mode"] == "mean"
    assert calls["cached"] == 2 and calls["plain"] == 0  # one loss call per step, all cached
    assert seen_checkpointing == [[True, True]] * 2
    # Checkpointed decoder-layer forwards: 2 steps x 2 columns x 2 mini-batches x 2 layers (the cached loss's first,
    # no-grad embedding pass runs the layers plainly)
    assert calls["checkpoint"] == 2 * 2 * 2 * 2, calls
    changed = changed_weights(cfg, final)
    assert all(changed[k] for k in changed if "layers." in k and k.endswith("proj.weight")), changed
    assert changed["embedding_model.embed_tokens.weight"]


@pytest.mark.parametrize("lora", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_train_layers_changes_exactly_the_top_k_layers(tiny_nvembed_folder_4_layers, toy_data, tmp_path, lora, k):
    """On a 4-layer backbone, train_layers: k trains layers 4 - k .. 3 (and the latent block), nothing below: with
    k = 3 "the top 3" is {1, 2, 3} where "from layer 3 up" is {3}; with k = 1 "the top 1" is {3} where "from layer 1
    up" is {1, 2, 3} (on 2 layers the two readings agree)."""
    stage = StageConfig(tasks=["toy_retrieval"], max_steps=2, batch_size=8, learning_rate=1e-3, num_hard_negatives=0)
    cfg = run_config(tmp_path, tiny_nvembed_folder_4_layers, stages=[stage], lora=lora, train_layers=k)
    changed = changed_weights(cfg, pipeline.train(cfg))

    def layer(key: str) -> int | None:
        parts = key.split(".")
        return (
            int(parts[parts.index("layers") + 1]) if "layers" in parts and key.startswith("embedding_model.") else None
        )

    layers = {layer(key) for key in changed} - {None}
    assert layers == {0, 1, 2, 3}, sorted(layers)
    trained = {layer(key) for key in changed if changed[key]} - {None}
    assert trained == set(range(4 - k, 4)), (k, sorted(trained))
    for index in trained:  # every adapted projection of each trained layer moved
        projections = [key for key in changed if layer(key) == index and key.endswith("proj.weight")]
        assert len(projections) == len(pipeline.LORA_TARGETS) and all(changed[key] for key in projections), projections
    assert not any(changed[key] for key in changed if "embed_tokens" in key)
    assert any(changed[key] for key in changed if key.startswith("latent_attention_model."))
    if lora:  # LoRA adapts the projections only: the top layers' norms and the final norm stay as they were
        assert not any(changed[key] for key in changed if "norm" in key and key.startswith("embedding_model."))


def run_pipeline_until_stage2_step(config_path: str, marker: str, step: int) -> None:
    """Child process of the kill test: the toy pipeline, which announces stage 2's `step` in `marker`, then waits to be
    killed."""
    import time

    pipeline.training_pairs = toy_pairs
    pipeline.task_specs = lambda: SPECS

    class Announce(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if Path(args.output_dir).name == "stage2" and state.global_step == step:
                Path(marker).write_text(str(step))
                time.sleep(600)

    original_init = pipeline.NVEmbedTrainer.__init__

    def init_with_announce(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(Announce())

    pipeline.NVEmbedTrainer.__init__ = init_with_announce
    pipeline.train(load_config(config_path))


def test_sigkill_in_stage2_resumes_there_and_skips_finished_stage1(
    tiny_nvembed_folder, toy_data, tmp_path, monkeypatch, caplog
):
    import dataclasses
    import logging
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    cfg = run_config(tmp_path, tiny_nvembed_folder)  # stage 2: 4 steps, a checkpoint every 2
    config_path, marker = tmp_path / "run.yaml", tmp_path / "stage2-step3"
    config_path.write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    tests = Path(__file__).resolve().parent
    code = (
        f"import sys; sys.path[:0] = [{str(tests.parent)!r}, {str(tests)!r}]; import test_train; "
        f"test_train.run_pipeline_until_stage2_step({str(config_path)!r}, {str(marker)!r}, 3)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), child.stderr.read() if child.poll() is not None else "timed out"
        child.send_signal(signal.SIGKILL)  # mid-step 3 of stage 2: no handler, no cleanup, no final save
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    run = Path(cfg.output_dir)
    assert (run / "stage1" / "done.json").is_file() and (run / "stage2" / "checkpoint-2").is_dir()
    assert not (run / "stage2" / "done.json").exists() and not (run / "stage2" / "checkpoint-4").exists()
    stage1_files = {p: p.stat().st_mtime_ns for p in (run / "stage1").rglob("*") if p.is_file()}

    began = []

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            began.append((Path(args.output_dir).name, state.global_step))

    original_init = pipeline.NVEmbedTrainer.__init__

    def init_with_record(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(Record())

    monkeypatch.setattr(pipeline.NVEmbedTrainer, "__init__", init_with_record)
    with caplog.at_level(logging.INFO, logger=pipeline.__name__):
        final = pipeline.train(cfg)
    assert began == [("stage2", 2)]  # no trainer for stage 1; stage 2 picks up at its last checkpoint
    assert "stage 1 already finished" in caplog.text and "resuming stage 2 from" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in (run / "stage1").rglob("*") if p.is_file()} == stage1_files
    assert json.loads((run / "stage2" / "done.json").read_text())["global_step"] == 4
    from safetensors.torch import load_file

    monkeypatch.setattr(pipeline.NVEmbedTrainer, "__init__", original_init)
    straight = pipeline.train(run_config(tmp_path / "straight", tiny_nvembed_folder))
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(final / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
