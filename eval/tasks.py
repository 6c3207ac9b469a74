"""The project's offline evaluation tasks as mteb tasks.

Each task reads a folder written by `python -m eval.export` (see `eval/export.py`) instead of a Hub dataset. The
folder is `$NVEMBED_EVAL_DIR`, else `<repo>/data_cache/eval`, or the `data_dir` passed to the task. Layout, one
folder per task, jsonl files:

    <root>/<task>/<split>/corpus.jsonl    {"id", "text"}                 retrieval
    <root>/<task>/<split>/queries.jsonl   {"id", "text"}                 retrieval
    <root>/<task>/<split>/qrels.jsonl     {"query-id", "corpus-id", "score"}
    <root>/<task>/<split>.jsonl           {"text", "label"}              classification (also train), clustering
    <root>/<task>/<split>.jsonl           {"sentence1", "sentence2", "score"}   sts, score in [0, 5]

The `Local*` base classes replace only mteb's loading (`load_data`); evaluation and scoring are mteb's. A concrete task
holds only its `TaskMetadata`. The instruction is `metadata.prompt`, as in mteb: `{"query": ...}` for retrieval
(passages get none), a plain string for the symmetric kinds (every input is a query in NV-Embed, paper section 3.3).

Example:
    >>> from eval.tasks import get_tasks
    >>> [task.metadata.name for task in get_tasks(["debian_description"], data_dir="/tmp/nowhere")]
    ['debian_description']
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from mteb.abstasks import AbsTaskClassification, AbsTaskClustering, AbsTaskRetrieval, AbsTaskSTS
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from eval.layout import EVAL_DIR_ENV, default_eval_dir
from eval.ood import INSTRUCTIONS as OOD_INSTRUCTIONS

# The instruction of each task is owned by train.data (one source for training and evaluation).
from train.data import TASKS as SOURCES
from train.data.core import CLASSIFIER_ROWS_PER_LABEL, first_rows_per_label


logger = logging.getLogger(__name__)

EXPORT_COMMAND = "python -m eval.export"
# Version of the folder layout above; recorded as the dataset revision in mteb's result files.
LAYOUT_REVISION = "nvembed-eval-jsonl-v1"


class EvalDataMissingError(FileNotFoundError):
    """A task's exported files are missing; the message names the file and the command that writes it."""


class _LocalDataMixin:
    """Points a task at a local export folder and keeps mteb's evaluation untouched."""

    metadata: TaskMetadata

    def __init__(self, data_dir: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir) if data_dir is not None else default_eval_dir()

    @property
    def task_dir(self) -> Path:
        return self.data_dir / self.metadata.name

    def _read(self, relative: str) -> list[dict[str, Any]]:
        path = self.task_dir / relative
        if not path.is_file():
            raise EvalDataMissingError(
                f"Task '{self.metadata.name}' needs {path}, which does not exist. Create it with "
                f"`{EXPORT_COMMAND} --tasks {self.metadata.name} --output-dir {self.data_dir}` "
                f"(or set {EVAL_DIR_ENV} to the folder that holds the export)."
            )
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def _splits_to_load(self) -> list[str]:
        return list(self.eval_splits)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = self._load_local()
        self.data_loaded = True


class LocalRetrievalTask(_LocalDataMixin, AbsTaskRetrieval):
    """Retrieval from `<task>/<split>/{corpus,queries,qrels}.jsonl`; main score nDCG@10."""

    def _load_local(self) -> dict[str, dict[str, RetrievalSplitData]]:
        splits = {}
        for split in self._splits_to_load():
            corpus = self._read(f"{split}/corpus.jsonl")
            queries = self._read(f"{split}/queries.jsonl")
            relevant_docs: dict[str, dict[str, int]] = {}
            for row in self._read(f"{split}/qrels.jsonl"):
                relevant_docs.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
            splits[split] = RetrievalSplitData(
                corpus=Dataset.from_dict({"id": [str(r["id"]) for r in corpus], "text": [r["text"] for r in corpus]}),
                queries=Dataset.from_dict(
                    {"id": [str(r["id"]) for r in queries], "text": [r["text"] for r in queries]}
                ),
                relevant_docs=relevant_docs,
                top_ranked=None,
            )
        return {"default": splits}


class LocalClassificationTask(_LocalDataMixin, AbsTaskClassification):
    """Logistic regression on `<task>/train.jsonl` embeddings, scored on `<task>/<split>.jsonl` (accuracy).

    The classifier trains on the first `train_rows_per_label` rows of each label (file order, fixed by the export), in
    one experiment: mteb's default (8 random rows per label, 10 experiments) embeds the union of its draws, nearly the
    whole train file (4000 texts for debian_section), which costs a CPU comparison more than all other tasks together.
    """

    train_rows_per_label = CLASSIFIER_ROWS_PER_LABEL
    samples_per_label = 16
    n_experiments = 1

    def _splits_to_load(self) -> list[str]:
        return list(dict.fromkeys([self.train_split, *self.eval_splits]))

    def _rows(self, split: str) -> list[dict]:
        rows = [{"text": r["text"], "label": r["label"]} for r in self._read(f"{split}.jsonl")]
        return first_rows_per_label(rows, self.train_rows_per_label) if split == self.train_split else rows

    def _load_local(self) -> DatasetDict:
        return DatasetDict({split: Dataset.from_list(self._rows(split)) for split in self._splits_to_load()})


class LocalClusteringTask(_LocalDataMixin, AbsTaskClustering):
    """k-means over all of `<task>/<split>.jsonl` (no subsampling: our sets are small); main score v-measure."""

    max_fraction_of_documents_to_embed = None
    max_documents_per_cluster = 2048

    def _load_local(self) -> DatasetDict:
        return DatasetDict(
            {
                split: Dataset.from_list(
                    [{"sentences": r["text"], "labels": r["label"]} for r in self._read(f"{split}.jsonl")]
                )
                for split in self._splits_to_load()
            }
        )


class LocalSTSTask(_LocalDataMixin, AbsTaskSTS):
    """Similarity of `sentence1`/`sentence2` against gold `score` in [0, 5]; main score cosine Spearman."""

    min_score = 0
    max_score = 5

    def _load_local(self) -> DatasetDict:
        return DatasetDict(
            {
                split: Dataset.from_list(
                    [
                        {"sentence1": r["sentence1"], "sentence2": r["sentence2"], "score": float(r["score"])}
                        for r in self._read(f"{split}.jsonl")
                    ]
                )
                for split in self._splits_to_load()
            }
        )


def _local_dataset(name: str) -> dict[str, str]:
    return {"path": f"local/{name}", "revision": LAYOUT_REVISION}


_COMMON = dict(
    category="t2t",
    eval_splits=["test"],
    eval_langs=["eng-Latn"],
    domains=["Written"],
    annotations_creators="derived",
    sample_creation="found",
    bibtex_citation="",
)


class DebianDescriptionRetrieval(LocalRetrievalTask):
    metadata = TaskMetadata(
        name="debian_description",
        description="Find the Debian package description (long form) that matches a package's one-line summary.",
        dataset=_local_dataset("debian_description"),
        type="Retrieval",
        main_score="ndcg_at_10",
        prompt={"query": SOURCES["debian_description"].instruction},
        **_COMMON,
    )


class PydocSummaryRetrieval(LocalRetrievalTask):
    metadata = TaskMetadata(
        name="pydoc_summary",
        description="Find the Python standard-library docstring body that matches its one-line summary.",
        dataset=_local_dataset("pydoc_summary"),
        type="Retrieval",
        main_score="ndcg_at_10",
        prompt={"query": SOURCES["pydoc_summary"].instruction},
        **_COMMON,
    )


class DebianSectionClassification(LocalClassificationTask):
    metadata = TaskMetadata(
        name="debian_section",
        description="Classify a Debian package description into its archive section (admin, devel, libs, ...).",
        dataset=_local_dataset("debian_section"),
        type="Classification",
        main_score="accuracy",
        prompt=SOURCES["debian_section"].instruction,
        **_COMMON,
    )


class PydocModuleClustering(LocalClusteringTask):
    metadata = TaskMetadata(
        name="pydoc_module",
        description="Cluster Python standard-library docstrings by the module they belong to.",
        dataset=_local_dataset("pydoc_module"),
        type="Clustering",
        main_score="v_measure",
        prompt=SOURCES["pydoc_module"].instruction,
        **_COMMON,
    )


class DebianTagsPairsSTS(LocalSTSTask):
    metadata = TaskMetadata(
        name="debian_tags_pairs",
        description="Rate how similar two Debian package descriptions are; gold score from the overlap of their tags.",
        dataset=_local_dataset("debian_tags_pairs"),
        type="STS",
        main_score="cosine_spearman",
        prompt=SOURCES["debian_tags_pairs"].instruction,
        **_COMMON,
    )


class InfoSectionRetrieval(LocalRetrievalTask):
    metadata = TaskMetadata(
        name="info_section",
        description="Out of domain: find a GNU Info manual section's text from its title (eval/ood.py).",
        dataset=_local_dataset("info_section"),
        type="Retrieval",
        main_score="ndcg_at_10",
        prompt={"query": OOD_INSTRUCTIONS["info_section"]},
        **_COMMON,
    )


class InfoManualClustering(LocalClusteringTask):
    metadata = TaskMetadata(
        name="info_manual",
        description="Out of domain: cluster paragraphs of the GNU Info manuals by manual (eval/ood.py).",
        dataset=_local_dataset("info_manual"),
        type="Clustering",
        main_score="v_measure",
        prompt=OOD_INSTRUCTIONS["info_manual"],
        **_COMMON,
    )


LOCAL_TASKS: dict[str, type[_LocalDataMixin]] = {
    cls.metadata.name: cls
    for cls in (
        DebianDescriptionRetrieval,
        PydocSummaryRetrieval,
        DebianSectionClassification,
        PydocModuleClustering,
        DebianTagsPairsSTS,
        InfoSectionRetrieval,
        InfoManualClustering,
    )
}
IN_DOMAIN_TASKS = tuple(name for name, spec in SOURCES.items() if spec.evaluate)
OUT_OF_DOMAIN_TASKS = tuple(OOD_INSTRUCTIONS)
KIND_OF_TYPE = {"Retrieval": "retrieval", "Classification": "classification", "Clustering": "clustering", "STS": "sts"}


def get_tasks(names: list[str] | None = None, data_dir: str | Path | None = None, split: str = "test") -> list:
    """Builds the named tasks: our local ones by name, anything else as a standard mteb task.

    Args:
        names: Task names; `None` means all local tasks.
        data_dir: Export folder for the local tasks (default: `default_eval_dir()`).
        split: Evaluation split, "test" or "dev".

    Returns:
        mteb task instances, restricted to `split`.

    Raises:
        KeyError: A name is neither a local task nor an mteb task; the message lists the local ones.
    """
    import mteb

    tasks = []
    for name in names or list(LOCAL_TASKS):
        if name in LOCAL_TASKS:
            task = LOCAL_TASKS[name](data_dir=data_dir)
        else:
            try:
                task = mteb.get_task(name)
            except KeyError as e:
                raise KeyError(
                    f"Unknown task '{name}'. Local tasks: {sorted(LOCAL_TASKS)}; or an mteb task name."
                ) from e
        tasks.append(task.filter_eval_splits([split]))
    return tasks
