"""Two-stage contrastive instruction tuning (paper section 4) on sentence-transformers' trainer.

    python -m train.pipeline train/configs/demo.yaml [--output-dir runs/x]

Stage 1: retrieval tasks, in-batch + mined hard negatives (MultipleNegativesRankingLoss, scale 1/temperature).
Stage 2: retrieval blended with classification/clustering/STS, one dataset per batch; the non-retrieval data uses
only its own hard negatives (HardNegativesOnlyRankingLoss). LoRA on the backbone (peft), latent block trained fully.
A killed run resumes from the last checkpoint of the stage it was in; finished stages are skipped.

Several devices: the same command under `torchrun --nproc_per_node N -m train.pipeline CONFIG` or
`accelerate launch -m train.pipeline CONFIG` runs DDP, with in-batch negatives gathered across processes
(`gather_across_devices`); see train/configs/README.md.
"""

import argparse
import gc
import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import Dataset, load_from_disk
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)
from transformers.trainer_utils import get_last_checkpoint

from convert_to_nvembed import convert, save_nvembed_folder
from modeling_nvembed import format_instruction
from nvembed_defaults import peer_model_path
from train.cache import save_atomically
from train.config import GEOMETRY_TASK, VECTORS_TASK, RunConfig, StageConfig, load_config
from train.distill import text_columns
from train.losses import (
    DistilledHardNegativesOnlyRankingLoss,
    DistilledMultipleNegativesRankingLoss,
    HardNegativesOnlyRankingLoss,
    TeacherGeometryLoss,
    TeacherVectorLoss,
    split_columns,
)


logger = logging.getLogger(__name__)

PROJECTION_FILE = "teacher_projection.safetensors"  # TeacherVectorLoss's projection, beside each checkpoint's weights
MEMORY_SHARE = 0.8  # the activations of one step may take this share of the free memory (check_memory)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def bf16_available(device: str) -> bool:
    """bf16 only where the hardware computes it natively: on CPUs without it a bf16 matmul is ~50x slower."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def uses_bf16(cfg: RunConfig, device: str) -> bool:
    """Whether a run trains under bf16 autocast on ``device``: its `bf16` key, where "auto" asks the hardware."""
    return bf16_available(device) if cfg.bf16 == "auto" else bool(cfg.bf16)


def distributed_state() -> PartialState:
    """The processes of a `torchrun` / `accelerate launch` run (gloo on CPU-only machines), or just this one."""
    return PartialState(cpu=not torch.cuda.is_available())


def prepare_base_model(cfg: RunConfig) -> Path:
    """An NV-Embed folder to start from: `base_model` itself, or a conversion of it (cached in output_dir/base)."""
    if cfg.base_model is not None and (Path(cfg.base_model) / "config.json").is_file():
        if json.loads((Path(cfg.base_model) / "config.json").read_text()).get("model_type") == "nvembed":
            if cfg.backbone_layers is not None:
                raise ValueError(
                    f"backbone_layers applies when a causal LM is converted; {cfg.base_model} is already an NV-Embed "
                    "folder (convert it again with nvembed-convert --num-layers, or drop backbone_layers)"
                )
            return Path(cfg.base_model)
    base = Path(cfg.output_dir) / "base"
    conversion = dict(
        source=cfg.base_model,
        num_latents=cfg.num_latents,
        mask_type=cfg.mask_type,
        pooling_mode=cfg.pooling_mode,
        latent_init=cfg.latent_init,
        num_layers=cfg.backbone_layers,
    )
    record = base / "conversion.json"
    with distributed_state().main_process_first():  # one process converts, the others load its result
        if not (base / "model.safetensors").is_file():
            convert(cfg.base_model, base, **{k: v for k, v in conversion.items() if k != "source"})
            record.write_text(json.dumps(conversion, indent=2) + "\n")
        else:
            check_cached_conversion(record, conversion)
    return base


def check_cached_conversion(record: Path, conversion: dict) -> None:
    """A resumed run must start from the base its config describes: a cached conversion made with other arguments
    (another backbone_layers, latent_init, ...) is refused rather than silently trained on."""
    if not record.is_file():
        logger.warning(f"{record.parent} has no {record.name}: cannot check it was converted with {conversion}")
        return
    cached = json.loads(record.read_text())
    changed = {k: (cached.get(k), v) for k, v in conversion.items() if cached.get(k) != v}
    if changed:
        detail = ", ".join(f"{k}: {old!r} there, {new!r} in the config" for k, (old, new) in changed.items())
        raise ValueError(
            f"{record.parent} was converted with other arguments ({detail}); use another output_dir or delete it"
        )


def load_for_training(folder: Path, cfg: RunConfig, device: str) -> SentenceTransformer:
    model = SentenceTransformer(str(folder), trust_remote_code=True, device=device)
    model.max_seq_length = cfg.max_seq_length
    nvembed = model[0].model
    total = nvembed.config.text_config.num_hidden_layers
    top = list(range(max(0, total - cfg.train_layers), total)) if cfg.train_layers is not None else None
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        # sentence-transformers' add_adapter fails with transformers 5.24 + peft 0.21, so LoRA goes on the backbone.
        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=LORA_TARGETS,
            layers_to_transform=top,
            layers_pattern="layers" if top is not None else None,
        )
        nvembed.embedding_model = get_peft_model(nvembed.embedding_model, lora)
    elif top is not None:
        freeze_below(nvembed.embedding_model, top[0])
    if cfg.gradient_checkpointing:
        nvembed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def freeze_below(backbone, first_trained: int) -> None:
    """Full fine-tuning of the top layers: freeze the embeddings and decoder layers below `first_trained` (the final
    norm and the layers from `first_trained` up stay trainable)."""
    frozen = 0
    for name, param in backbone.named_parameters():
        parts = name.split(".")
        if "layers" in parts:
            index = int(parts[parts.index("layers") + 1])
            if index < first_trained:
                param.requires_grad_(False)
                frozen += 1
        elif "embed_tokens" in parts:
            param.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError(f"train_layers: found no embedding or decoder-layer parameters to freeze in {type(backbone)}")


def task_specs():
    from train.data import TASKS

    return TASKS


def training_pairs(task: str, label_negatives: int = 1) -> Dataset:
    from train.data import training_pairs as build_pairs

    return build_pairs(task, "train", num_negatives=label_negatives)


def dataset_specs(cfg: RunConfig) -> dict:
    """Kind and instruction of the run's `datasets:` entries (Hub datasets, synthetic queries; train.data)."""
    from train.data import configured_tasks

    return configured_tasks(cfg.datasets)


def all_specs(cfg: RunConfig) -> dict:
    """The built-in tasks and the run's `datasets:` entries, by name."""
    return {**task_specs(), **dataset_specs(cfg)}


def dataset_pairs(task: str, cfg: RunConfig, label_negatives: int = 1) -> Dataset:
    from train.data import configured_pairs

    return configured_pairs(task, cfg.datasets[task], seed=cfg.seed, num_negatives=label_negatives)


def task_prompt(spec) -> str:
    """A task's prompt: its instruction in the template, or "" for an empty instruction (a task trained plain)."""
    return format_instruction(spec.instruction) if spec.instruction else ""


def stage_datasets(stage: StageConfig, cfg: RunConfig, miner) -> tuple[dict, dict, dict]:
    """Per-task training datasets (anchor, positive, negative_1..), losses and anchor prompts for one stage."""
    gather = cfg.gather_across_devices and distributed_state().num_processes > 1
    if cfg.distill_weight > 0 and (cfg.cached_loss or gather):  # before any mining or teacher work
        raise ValueError("distill_weight > 0 works with the plain losses on one process: set cached_loss: false.")
    specs = all_specs(cfg)
    datasets, prompts, kinds = {}, {}, {}
    for task in stage.tasks:
        if task in (GEOMETRY_TASK, VECTORS_TASK):
            if task == VECTORS_TASK and cfg.vector_weight <= 0:
                raise ValueError(f"The stage entry {VECTORS_TASK!r} needs vector_weight > 0 (its loss's weight).")
            data = geometry_texts(stage.cap(task), cfg.seed)
            datasets[task] = with_teacher_vectors(data, task, cfg, miner)
            kinds[task] = task  # no prompt: plain encode() is what these entries train
            continue
        if task not in specs:
            known = sorted([*specs, GEOMETRY_TASK, VECTORS_TASK])
            raise ValueError(f"Unknown task {task!r} in the config. Known tasks: {known}")
        spec = specs[task]
        if task in cfg.datasets:
            data = dataset_pairs(task, cfg, stage.label_negatives)
        else:
            data = training_pairs(task, stage.label_negatives)
        cap = stage.cap(task)
        if cap is not None:
            data = data.select(range(min(len(data), cap)))
        data = data.remove_columns([c for c in data.column_names if c == "task"])
        # Published hard negatives (a `datasets:` entry mapping negative_1..) are kept; the others are mined.
        if spec.kind == "retrieval" and stage.num_hard_negatives > 0 and "negative_1" not in data.column_names:
            data = mine_negatives(data, task, stage.num_hard_negatives, cfg, miner)
        check_columns(data, task)
        if cfg.distill_weight > 0:
            data = with_teacher_vectors(data, task, cfg, miner)
        datasets[task] = data
        kinds[task] = spec.kind
        if prompt := task_prompt(spec):  # none for an empty instruction (broad_paraphrase): plain on both sides
            prompts[task] = {"anchor": prompt}
    scale = 1.0 / cfg.temperature
    losses = {}
    distill = {
        "distill_weight": cfg.distill_weight,
        "teacher_scale": 1.0 / cfg.distill_temperature,
        "similarity_weight": cfg.distill_similarity_weight,
        "passage_weight": cfg.distill_passage_weight,
    }
    # The ranking loss's in-batch terms and hardness weighting (MultipleNegativesRankingLoss's own options)
    terms = {
        "directions": tuple(cfg.directions),
        "hardness_mode": cfg.hardness_mode,
        "hardness_strength": cfg.hardness_strength,
    }
    vectors = None
    if cfg.vector_weight > 0:  # one projection for the stage's every loss (run_stage saves and carries it)
        teacher_dim = miner.teacher.get_embedding_dimension()
        vectors = TeacherVectorLoss(miner.student, teacher_dim, weight=cfg.vector_weight)
        if cfg.distill_weight > 0:
            distill["vector_loss"] = vectors
    for task, data in datasets.items():
        if kinds[task] == VECTORS_TASK:
            losses[task] = vectors
        elif kinds[task] == GEOMETRY_TASK:
            losses[task] = TeacherGeometryLoss(
                miner.student,
                weight=cfg.geometry_weight,
                kl_weight=cfg.geometry_kl_weight,
                scale=1.0 / cfg.distill_temperature,
            )
        elif kinds[task] != "retrieval" and not stage.in_batch_negatives_for_non_retrieval:
            if cfg.distill_weight > 0:
                losses[task] = DistilledHardNegativesOnlyRankingLoss(miner.student, scale=scale, **distill)
            else:
                losses[task] = HardNegativesOnlyRankingLoss(miner.student, scale=scale)
        elif cfg.distill_weight > 0:
            losses[task] = DistilledMultipleNegativesRankingLoss(miner.student, scale=scale, **distill, **terms)
        elif cfg.cached_loss:
            losses[task] = CachedMultipleNegativesRankingLoss(
                miner.student,
                scale=scale,
                mini_batch_size=cfg.mini_batch_size,
                gather_across_devices=gather,
                **terms,
            )
        else:
            losses[task] = MultipleNegativesRankingLoss(
                miner.student, scale=scale, gather_across_devices=gather, **terms
            )
    if cfg.matryoshka_dims:
        full = miner.student.get_embedding_dimension()
        if max(cfg.matryoshka_dims) != full:
            raise ValueError(
                f"matryoshka_dims {cfg.matryoshka_dims} must end at the model's embedding size {full} (else the full "
                "vectors are not trained)"
            )
        losses = {task: MatryoshkaLoss(miner.student, loss, cfg.matryoshka_dims) for task, loss in losses.items()}
    return datasets, losses, prompts


def check_columns(data: Dataset, task: str) -> None:
    if len(data) == 0:
        raise ValueError(f"Training data of task {task!r} is empty.")
    for column in ("anchor", "positive"):
        if column not in data.column_names:
            raise ValueError(
                f"Training data of task {task!r} has no {column!r} column (columns: {data.column_names})."
            )


class Miner:
    """Hard-negative mining with sentence-transformers' `mine_hard_negatives`, positive-aware (relative margin)."""

    def __init__(self, student: SentenceTransformer, cfg: RunConfig, device: str):
        self.student = student
        self.cfg = cfg
        self.device = device
        self.max_seq_length = cfg.max_seq_length  # the current stage's (run_stage sets it)
        self._teacher = None

    @property
    def model(self) -> SentenceTransformer:
        return self.student if self.cfg.mining_model == "self" else self.teacher

    @property
    def teacher(self) -> SentenceTransformer:
        if self._teacher is None:
            self._teacher = load_teacher(self.cfg.teacher_model, self.device)
        # Mine on the text the student sees: same truncation (and 2-4x cheaper than the teacher's 256 tokens).
        self._teacher.max_seq_length = self.max_seq_length
        return self._teacher


def load_teacher(name: str | None, device: str) -> SentenceTransformer:
    """The run's teacher: a sentence-transformers folder or name, or (None) the bundled all-MiniLM-L6-v2."""
    if name is None:
        return SentenceTransformer(str(peer_model_path()), device=device)
    if not Path(name).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ValueError(
            f"teacher_model {name!r} is not a folder here and the Hub is offline (HF_HUB_OFFLINE=1): give the path "
            "of a sentence-transformers folder, or null for the bundled all-MiniLM-L6-v2"
        )
    return SentenceTransformer(name, device=device)


def teacher_key(cfg: RunConfig) -> str:
    """A short name of the teacher for cache folders: cached vectors of one teacher are never read for another."""
    if cfg.teacher_model is None:
        return "minilm"
    path = Path(cfg.teacher_model)
    name = str(path.resolve()) if path.exists() else cfg.teacher_model
    return hashlib.sha256(name.encode()).hexdigest()[:10]


def geometry_texts(limit: int | None, seed: int) -> Dataset:
    """The `teacher_geometry` stage entry's rows: one `anchor` column of texts drawn from every broad source's train
    split and the in-domain retrieval passages (Debian descriptions, docstrings), in a seeded order."""
    from train.data import load_source
    from train.data.broad import broad_texts
    from train.data.core import normalize, stable_hash

    texts = list(broad_texts("train"))
    for task in ("debian_description", "pydoc_summary"):
        texts.extend(load_source(task)["train"]["passage"])
    seen, unique = set(), []
    for text in texts:
        key = normalize(text)
        if key not in seen:
            seen.add(key)
            unique.append(text)
    unique.sort(key=lambda t: (stable_hash(f"{seed}:{t}"), t))
    return Dataset.from_dict({"anchor": unique[:limit] if limit is not None else unique})


def mine_negatives(data: Dataset, task: str, num_negatives: int, cfg: RunConfig, miner: Miner) -> Dataset:
    name = f"{task}-n{num_negatives}-len{miner.max_seq_length}-m{cfg.relative_margin}-{len(data)}-{data._fingerprint}"
    # With the model being trained as miner the result depends on the run, so it stays in the run's folder.
    root = Path(cfg.mining_cache_dir) if cfg.mining_model == "teacher" else Path(cfg.output_dir) / "mined"
    cache = root / name
    with distributed_state().main_process_first():  # one process mines, the others read its cache
        if (cache / "dataset_info.json").is_file():
            return load_from_disk(str(cache))
        return _mine_and_cache(data, num_negatives, cfg, miner, cache)


def with_teacher_vectors(data: Dataset, task: str, cfg: RunConfig, miner: Miner) -> Dataset:
    """The rows with the teacher's vectors as `label` (train.distill), cached beside the mined negatives."""
    from train.distill import add_teacher_vectors

    name = f"teacher-{teacher_key(cfg)}-{task}-len{miner.max_seq_length}-{len(data)}-{data._fingerprint}"
    cache = Path(cfg.mining_cache_dir) / name
    with distributed_state().main_process_first():
        started, cached = time.perf_counter(), (cache / "dataset_info.json").is_file()
        result = add_teacher_vectors(data, miner.teacher, cache)
        if not cached and distributed_state().is_main_process:  # the ratio of teacher time to training time
            record = {"task": task, "texts": len(data), "seconds": round(time.perf_counter() - started, 1)}
            Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(cfg.output_dir) / "teacher_encoding.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        return result


def _mine_and_cache(data: Dataset, num_negatives: int, cfg: RunConfig, miner: Miner, cache: Path) -> Dataset:
    from sentence_transformers.util import mine_hard_negatives

    mined = mine_hard_negatives(
        data,
        miner.model,
        anchor_column_name="anchor",
        positive_column_name="positive",
        num_negatives=num_negatives,
        relative_margin=cfg.relative_margin,
        sampling_strategy="top",
        output_format="n-tuple",
        batch_size=64,
        verbose=False,
    )
    save_atomically(mined, cache)
    return mined


def load_saved_weights(model: SentenceTransformer, folder: str | Path) -> None:
    """Load weights saved from this very (peft-wrapped) model back into it, strictly."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        if file.name != PROJECTION_FILE:  # the teacher-vector loss's weights, not the model's
            state.update(load_file(str(file)))
    model[0].model.load_state_dict(state, strict=True)


def teacher_vector_loss(losses: dict) -> TeacherVectorLoss | None:
    """The run's `TeacherVectorLoss` among a stage's losses (its own entry or a ranking loss's term)."""
    for loss in losses.values() if isinstance(losses, dict) else [losses]:
        for module in (loss, getattr(loss, "vector_loss", None)):
            if isinstance(module, TeacherVectorLoss):
                return module
    return None


def teacher_projection(losses: dict) -> torch.nn.Linear | None:
    """The run's `TeacherVectorLoss` projection among a stage's losses, if any."""
    vectors = teacher_vector_loss(losses)
    return None if vectors is None else vectors.projection


RIDGE_TEXTS = 1024  # texts of `vector_init: ridge`'s fit: 62 s of encoding at 64 tokens on 2 cores (train-vecr)


def fit_projection_to_teacher(
    vectors: TeacherVectorLoss, model, datasets: dict, prompts: dict, seed: int, limit: int = RIDGE_TEXTS
) -> float:
    """Start `vectors`' projection at the ridge map from the student's vectors to the teacher's (`vector_init:
    ridge`), fitted on up to `limit` texts drawn evenly from the stage's datasets (first text column, encoded with
    the prompt that training gives it; teacher vectors from the cached `label` column). Returns the fit's cosine."""
    student, teacher = [], []
    with_labels = {task: data for task, data in datasets.items() if "label" in data.column_names}
    if not with_labels:
        raise ValueError("vector_init: ridge needs teacher vectors (a `label` column) in one of the stage's datasets")
    share = max(1, limit // len(with_labels))
    for task, data in with_labels.items():
        rows = data.shuffle(seed=seed).select(range(min(share, len(data))))
        column = text_columns(data)[0]
        labels = torch.tensor(rows["label"], dtype=torch.float32)
        teacher.append(split_columns(labels, len(rows), len(text_columns(data)))[0])
        prompt = prompts.get(task, {}).get(column)
        student.append(model.encode(rows[column], prompt=prompt, batch_size=32, convert_to_tensor=True).cpu().float())
    fit = vectors.fit_projection(torch.cat(student), torch.cat(teacher))
    logger.info("teacher-vector projection fitted by ridge on %d texts: cosine %.3f", sum(map(len, student)), fit)
    return fit


def save_projection(projection: torch.nn.Linear | None, folder: str | Path) -> None:
    if projection is not None:
        from safetensors.torch import save_model

        save_model(projection, str(Path(folder) / PROJECTION_FILE))


def load_projection(projection: torch.nn.Linear, folder: str | Path) -> None:
    from safetensors.torch import load_model

    path = Path(folder) / PROJECTION_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the run trains teacher vectors (vector_weight > 0) but this checkpoint was saved "
            "without their projection (a run with another config?). Delete the stage folder to start it afresh."
        )
    load_model(projection, str(path))


class NVEmbedTrainer(SentenceTransformerTrainer):
    """The stock trainer, plus: checkpoints of the peft-wrapped NV-Embed, and the teacher-vector projection (a weight
    of the loss, which the stock checkpoint leaves out) saved and restored with each checkpoint."""

    def _load_from_checkpoint(self, checkpoint_path: str) -> None:
        # The stock loader rebuilds a SentenceTransformer from the checkpoint folder, whose NV-Embed code knows
        # nothing of the peft wrapper around the backbone; the saved state dict matches the live module, so load it.
        load_saved_weights(self.model, checkpoint_path)
        if (projection := teacher_projection(self.loss)) is not None:
            load_projection(projection, checkpoint_path)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        save_projection(teacher_projection(self.loss), output_dir if output_dir is not None else self.args.output_dir)


def run_stage(model: SentenceTransformer, stage: StageConfig, index: int, cfg: RunConfig, miner: Miner, device: str):
    stage_dir = Path(cfg.output_dir) / f"stage{index}"
    if (stage_dir / "done.json").is_file():
        logger.info("stage %d already finished; loading its weights", index)
        load_saved_weights(model, stage_dir / "final")
        return
    length = stage_length(stage, cfg)
    model.max_seq_length = miner.max_seq_length = length  # the student's truncation, and the teacher's (mining)
    datasets, losses, prompts = stage_datasets(stage, cfg, miner)
    vectors = teacher_vector_loss(losses)
    previous = Path(cfg.output_dir) / f"stage{index - 1}" / "final"
    last = get_last_checkpoint(str(stage_dir)) if stage_dir.is_dir() else None
    if vectors is not None and (previous / PROJECTION_FILE).is_file():
        load_projection(vectors.projection, previous)  # stage 2 goes on with stage 1's map instead of a random one
    elif vectors is not None and cfg.vector_init == "ridge" and not last:  # a resumed run loads its own
        fit_projection_to_teacher(vectors, model, datasets, prompts, cfg.seed)
    columns = max(len(text_columns(d)) for d in datasets.values())  # not `label` (teacher vectors)
    check_memory(stage, cfg, device, columns, model[0].model.config.text_config)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(stage_dir),
        max_steps=stage.max_steps,
        per_device_train_batch_size=stage.batch_size,
        learning_rate=stage.learning_rate,
        warmup_steps=stage.warmup_ratio,  # transformers 5: a float below 1 is a fraction of max_steps
        lr_scheduler_type="linear",
        bf16=uses_bf16(cfg, device),
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,  # one dataset per batch
        prompts=prompts,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=cfg.logging_steps,
        report_to="none",
        seed=cfg.seed,
        dataloader_num_workers=0,
        use_cpu=device == "cpu",
        eval_strategy="steps" if cfg.eval_steps else "no",
        eval_steps=cfg.eval_steps,
    )
    logger.info("stage %d trains in %s", index, "bf16 autocast" if args.bf16 else "fp32")  # hosts differ: say which
    from train.monitor import RunMonitor, dev_evaluators

    steps_before = sum(s.max_steps for s in cfg.stages[: index - 1])
    monitor = RunMonitor(cfg.output_dir, index, steps_before, sum(s.max_steps for s in cfg.stages))
    evaluator = dev_evaluators(cfg.eval_queries) if cfg.eval_steps else None
    trainer = NVEmbedTrainer(
        model=model, args=args, train_dataset=datasets, loss=losses, evaluator=evaluator, callbacks=[monitor]
    )
    if last:
        logger.info("resuming stage %d from %s", index, last)
    elif evaluator is not None and index == 1:
        trainer.evaluate()  # the curve's first point: the model before any training step
    trainer.train(resume_from_checkpoint=last)
    state = distributed_state()
    if state.is_main_process:
        write_loss_log(trainer.state.log_history, stage_dir, index)
        model[0].model.save_pretrained(stage_dir / "final")
        save_projection(teacher_projection(losses), stage_dir / "final")
        (stage_dir / "done.json").write_text(json.dumps({"global_step": trainer.state.global_step}))
    state.wait_for_everyone()
    # The trainer holds this stage's optimizer state (2 x the trained weights for AdamW) and gradients in reference
    # cycles; without a collection they live on beside the next stage's (the demo's RSS rose 9.0 -> 12.8 GB there).
    trainer.optimizer = trainer.lr_scheduler = None
    model.zero_grad(set_to_none=True)
    del trainer
    release_freed_memory()


def release_freed_memory() -> None:
    """Collect reference cycles, then hand the heap's free pages back to the OS (glibc's `malloc_trim`). Freed tensors
    otherwise stay resident in the allocator's fragmented heap: the next stage's differently shaped tensors do not fit
    those holes and take new pages, so the demo's stage 2 sat ~3 GB above the same step in a fresh process
    (levers-2026-12-07.md). Where the C library has no `malloc_trim` (not glibc), only the collection runs."""
    import ctypes
    import ctypes.util

    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):  # musl, macOS, Windows: no malloc_trim
        return
    trim(0)


def stage_length(stage: StageConfig, cfg: RunConfig) -> int:
    """Tokens per text in `stage`: its own `max_seq_length`, else the run's."""
    return stage.max_seq_length if stage.max_seq_length is not None else cfg.max_seq_length


def check_memory(stage: StageConfig, cfg: RunConfig, device: str, columns: int, text_config) -> None:
    """Refuse a batch whose activations clearly cannot fit, before any work (rough estimate, fp32)."""
    import psutil

    length = stage_length(stage, cfg)
    hidden, layers = text_config.hidden_size, text_config.num_hidden_layers
    per_token = layers * hidden * 4 * 24  # bytes kept per token for backward, ~24 activations of width d per layer
    batch = stage.batch_size if not cfg.cached_loss else min(stage.batch_size, cfg.mini_batch_size)
    need = batch * columns * length * per_token
    if cfg.gradient_checkpointing:
        need //= layers
    free = torch.cuda.mem_get_info()[0] if device.startswith("cuda") else psutil.virtual_memory().available
    if need > MEMORY_SHARE * free:
        raise ValueError(
            f"batch_size={stage.batch_size} x {columns} columns x {length} tokens needs about "
            f"{need / 2**30:.1f} GiB of activations, more than {MEMORY_SHARE:.0%} of the {free / 2**30:.1f} GiB "
            "free (the rest is headroom for the weights, optimizer state and other processes). Set cached_loss: true "
            "(GradCache, mini_batch_size) and/or gradient_checkpointing: true, or lower batch_size/max_seq_length."
        )


def write_loss_log(history: list[dict], stage_dir: Path, index: int) -> None:
    rows = [h for h in history if "loss" in h]
    with open(stage_dir / "loss_log.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker="o")
    ax.set(xlabel="step", ylabel="training loss", title=f"NV-Embed stage {index}")
    fig.tight_layout()
    fig.savefig(stage_dir / "loss.png", dpi=120)
    plt.close(fig)


def save_final(model: SentenceTransformer, cfg: RunConfig, output: Path) -> Path:
    """Merge LoRA into the backbone and save a plain NV-Embed folder (AutoModel and SentenceTransformer load it)."""
    nvembed = model[0].model
    if hasattr(nvembed.embedding_model, "merge_and_unload"):
        nvembed.embedding_model = nvembed.embedding_model.merge_and_unload()
    state = distributed_state()
    if state.is_main_process:
        _write_final(model, nvembed, cfg, output)
    state.wait_for_everyone()
    return output


def _write_final(model: SentenceTransformer, nvembed, cfg: RunConfig, output: Path) -> None:
    if output.exists():
        shutil.rmtree(output)
    specs = all_specs(cfg)
    # the folder's default "query" prompt: the first retrieval task's (teacher_geometry has no spec: no prompt)
    retrieval = [
        t for s in cfg.stages for t in s.tasks if t in specs and specs[t].kind == "retrieval" and task_prompt(specs[t])
    ]
    query_prompt = task_prompt(specs[retrieval[0]]) if retrieval else model.prompts.get("query", "")
    # config.json records the sizes the Matryoshka loss trained, so a server can offer exactly those (serve.app)
    nvembed.config.matryoshka_dimensions = sorted(cfg.matryoshka_dims) if cfg.matryoshka_dims else None
    nvembed.config.validate_architecture()
    save_nvembed_folder(nvembed, output, query_prompt=query_prompt, max_seq_length=4096)
    st_config = json.loads((output / "config_sentence_transformers.json").read_text())
    st_config["prompts"].update({name: task_prompt(spec) for name, spec in specs.items()})
    (output / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2) + "\n")
    instructions = {name: {"kind": spec.kind, "instruction": spec.instruction} for name, spec in specs.items()}
    (output / "instructions.json").write_text(json.dumps(instructions, indent=2) + "\n")


def train(cfg: RunConfig, final_dir: str | Path | None = None, budget_minutes: float | None = None) -> Path:
    """Train every stage of `cfg` and save the merged model; with `budget_minutes`, the stages' steps are first fitted
    to that many minutes from a step measured on this machine (train.budget; kept by a resumed run)."""
    started = time.perf_counter()
    # Under torchrun / accelerate launch this sets up the process group; each process gets its own device.
    state = distributed_state()
    device = "cpu" if state.device.type == "cpu" else str(state.device)
    torch.manual_seed(cfg.seed)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    if cfg.datasets:  # a missing Hub dataset or local copy fails here, before the conversion and any stage
        from train.data import check_configured

        check_configured(cfg.datasets, [t for s in cfg.stages for t in s.tasks])
    base = prepare_base_model(cfg)
    release_freed_memory()  # the GGUF dequantization's buffers, before training allocates
    model = load_for_training(base, cfg, device)
    if budget_minutes is not None:
        from train.budget import apply_budget

        model.max_seq_length = stage_length(cfg.stages[0], cfg)
        cfg = apply_budget(cfg, budget_minutes, model, elapsed_seconds=time.perf_counter() - started)
    miner = Miner(model, cfg, device)
    for index, stage in enumerate(cfg.stages, start=1):
        run_stage(model, stage, index, cfg, miner, device)
    return save_final(model, cfg, Path(final_dir or Path(cfg.output_dir) / "final"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--final-dir", default=None, help="where the merged model goes (default OUTPUT_DIR/final)")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="fit the stages' steps to this many minutes from a step measured here (train.budget; a resumed run "
        "keeps the plan in OUTPUT_DIR/budget.json)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args.config, output_dir=args.output_dir)
    final = train(cfg, args.final_dir, budget_minutes=args.budget_minutes)
    if args.budget_minutes is not None:  # the card states the steps the run took (the plan it persisted)
        from train.budget import apply_budget

        cfg = apply_budget(cfg, args.budget_minutes, model=None)
    if distributed_state().is_main_process:
        write_card(final, cfg, command=invocation("train.pipeline", argv))
    print(final)


def invocation(module: str, argv: list[str] | None) -> str:
    """The command line that ran `python -m module` with these arguments (`sys.argv`'s when None), for the card."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


CARD_HYPERPARAMETERS = (
    "latent_init",
    "num_latents",
    "mask_type",
    "pooling_mode",
    "lora",
    "train_layers",
    "temperature",
    "directions",
    "hardness_mode",
    "hardness_strength",
    "distill_weight",
    "distill_temperature",
    "distill_similarity_weight",
    "distill_passage_weight",
    "teacher_model",
    "geometry_weight",
    "vector_weight",
    "matryoshka_dims",
    "max_seq_length",
    "seed",
)
CARD_STAGE_KEYS = (
    "tasks",
    "max_steps",
    "batch_size",
    "learning_rate",
    "num_hard_negatives",
    "in_batch_negatives_for_non_retrieval",
    "label_negatives",
    "max_examples_per_task",
    "max_seq_length",
)


def card_training_config(cfg: RunConfig, command: str | None = None) -> dict:
    """The run's recipe as `publish.card.render_card`'s `training_config` (hyper-parameters, stages, hardware and
    the command that ran it), also saved as the folder's `training_config.json` so that `publish` renders the same
    card later."""
    hyper = {key: getattr(cfg, key) for key in CARD_HYPERPARAMETERS}
    if cfg.lora:
        hyper |= {"lora_rank": cfg.lora_rank, "lora_alpha": cfg.lora_alpha}
    if torch.cuda.is_available():
        hardware = f"GPU ({torch.cuda.get_device_name(0)})"
    else:
        hardware = f"CPU, {torch.get_num_threads()} threads"
    stages = [{key: getattr(stage, key) for key in CARD_STAGE_KEYS} for stage in cfg.stages]
    for entry, stage in zip(stages, cfg.stages):
        entry["max_seq_length"] = stage_length(stage, cfg)
    return {**hyper, "stages": stages, "hardware": hardware} | ({"command": command} if command else {})


def write_card(final: Path, cfg: RunConfig, eval_results: dict | None = None, command: str | None = None) -> None:
    """The model card and `training_config.json`, with `eval_results` or else the dev scores of the run's last
    evaluation (train.monitor) when it had any, and the `command` that trained the folder."""
    from publish.card import TRAINING_CONFIG_FILE, render_card
    from train.monitor import card_results, read_curve

    if eval_results is None:
        curve = read_curve(Path(cfg.output_dir) / "dev_curve.jsonl")
        eval_results = card_results(curve[-1]["scores"]) if curve else {}
    training_config = card_training_config(cfg, command)
    Path(final, TRAINING_CONFIG_FILE).write_text(json.dumps(training_config, indent=2) + "\n")
    render_card(
        final,
        base_model=cfg.base_model or "HuggingFaceTB/SmolLM2-135M-Instruct",
        training_config=training_config,
        eval_results=eval_results or None,
    )


if __name__ == "__main__":
    main()
