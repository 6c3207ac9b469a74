"""What a long CPU run shows while it trains: dev scores every `eval_steps` (sentence-transformers' evaluators on small
dev sets, in-domain and out-of-domain), the whole run's progress with an ETA, and the learning curve (dev score
against CPU-minutes) as JSONL and PNG in the run's folder.

The dev sets come from `train.data` (dev splits) and `train.data.info_manuals` (dev split of the out-of-domain tasks
that `eval/ood.py` evaluates); the test splits are never read here.
"""

from __future__ import annotations

import functools
import json
import logging
import resource
import time
from pathlib import Path

from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from transformers import TrainerCallback

from modeling_nvembed import format_instruction


logger = logging.getLogger(__name__)

RETRIEVAL_DEV = ("debian_description", "pydoc_summary", "info_section")
STS_DEV = ("debian_tags_pairs",)
CLASSIFICATION_DEV = ("debian_section",)


@functools.lru_cache(maxsize=None)  # read once per process: the demo scores four systems, a run every eval_steps
def _retrieval_rows(task: str) -> tuple[dict, ...]:
    if task == "info_section":
        from train.data.info_manuals import build

        return tuple(build()["info_section"]["dev"])
    from train.data import load_source

    return tuple(load_source(task)["dev"].to_list())


def _instruction(task: str) -> str:
    from train.data import TASKS
    from train.data.info_manuals import INSTRUCTIONS

    return TASKS[task].instruction if task in TASKS else INSTRUCTIONS[task]


class ClassificationEvaluator(BaseEvaluator):
    """Accuracy of a logistic regression fitted on the embeddings of a few labelled train rows, scored on dev rows:
    mteb's classification protocol (`eval.tasks.LocalClassificationTask`: the first `CLASSIFIER_ROWS_PER_LABEL` train
    rows of each label, sklearn's `LogisticRegression(max_iter=100)`, one experiment). sentence-transformers has no
    evaluator that fits a classifier on frozen embeddings (`LabelAccuracyEvaluator` needs a trained softmax head)."""

    def __init__(self, train_rows, dev_rows, name: str, prompt: str | None = None, batch_size: int = 32):
        from train.data.core import first_rows_per_label

        super().__init__()
        self.primary_metric = "accuracy"
        self.train_rows = first_rows_per_label(train_rows)
        self.dev_rows, self.name, self.prompt, self.batch_size = list(dev_rows), name, prompt, batch_size

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        from sklearn.linear_model import LogisticRegression

        def embed(rows):
            texts = [r["text"] for r in rows]
            return model.encode(texts, prompt=self.prompt, batch_size=self.batch_size, show_progress_bar=False)

        classifier = LogisticRegression(max_iter=100, random_state=42)
        classifier.fit(embed(self.train_rows), [r["label"] for r in self.train_rows])
        accuracy = float(classifier.score(embed(self.dev_rows), [r["label"] for r in self.dev_rows]))
        return self.prefix_name_to_metrics({"accuracy": accuracy}, self.name)


def retrieval_evaluator(
    rows, name: str, query_prompt: str | None, batch_size: int = 32, corpus_prompt: str | None = None
):
    """sentence-transformers' InformationRetrievalEvaluator on {query, passage} rows: each query's own passage is its
    one relevant document, the corpus is every row's passage (nDCG@10 is `{name}_cosine_ndcg@10`)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        queries={f"q{i}": r["query"] for i, r in enumerate(rows)},
        corpus={f"d{i}": r["passage"] for i, r in enumerate(rows)},
        relevant_docs={f"q{i}": {f"d{i}"} for i in range(len(rows))},
        query_prompt=query_prompt,
        corpus_prompt=corpus_prompt,
        name=name,
        batch_size=batch_size,
        write_csv=False,
        ndcg_at_k=[10],
        mrr_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[10],
        map_at_k=[10],
    )


def dev_evaluators(limit: int = 100, instructions: bool = True, batch_size: int = 32) -> list:
    """sentence-transformers evaluators: nDCG@10 on `limit` dev queries per retrieval task (corpus = their passages),
    Spearman on `limit` dev pairs of the STS task, accuracy on `limit` dev rows of the classification task.
    `instructions=False` for models that take none (MiniLM, raw)."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from train.data import load_source

    evaluators = []
    for task in RETRIEVAL_DEV:
        prompt = format_instruction(_instruction(task)) if instructions else None
        evaluators.append(retrieval_evaluator(_retrieval_rows(task)[:limit], task, prompt, batch_size))
    for task in STS_DEV:
        rows = load_source(task)["dev"].to_list()[:limit]
        # Symmetric task: NV-Embed gives both sides the instruction; ST's evaluator takes no prompt, so it is prepended
        # to the texts (sentence-transformers then pools it too: a small difference from mteb's scoring).
        prefix = format_instruction(_instruction(task)) if instructions else ""
        evaluators.append(
            EmbeddingSimilarityEvaluator(
                [prefix + r["sentence1"] for r in rows],
                [prefix + r["sentence2"] for r in rows],
                [r["score"] / 5.0 for r in rows],
                name=task,
                batch_size=batch_size,
                write_csv=False,
            )
        )
    for task in CLASSIFICATION_DEV:
        source = load_source(task)
        evaluators.append(
            ClassificationEvaluator(
                source["train"].to_list(),
                source["dev"].to_list()[: limit * 2],  # accuracy over many labels needs more rows than a ranking
                name=task,
                prompt=format_instruction(_instruction(task)) if instructions else None,
                batch_size=batch_size,
            )
        )
    return evaluators


def main_scores(metrics: dict[str, float]) -> dict[str, float]:
    """Evaluator metrics -> {task: main score}: nDCG@10 for retrieval, cosine Spearman for STS, accuracy for
    classification."""
    scores = {}
    for key, value in metrics.items():
        key = key.removeprefix("eval_")
        for task in RETRIEVAL_DEV:
            if key == f"{task}_cosine_ndcg@10":
                scores[task] = value
        for task in STS_DEV:
            if key == f"{task}_spearman_cosine":
                scores[task] = value
        for task in CLASSIFICATION_DEV:
            if key == f"{task}_accuracy":
                scores[task] = value
    return scores


@functools.lru_cache(maxsize=None)  # once per process: a run's RunMonitor starts once per stage
def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    """fp32 matmul speed of this machine at torch's thread count: printed beside run times so that times measured on
    different machines can be compared (the same 2-core job has run 3x slower on one host than on another)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RunMonitor(TrainerCallback):
    """Whole-run progress (all stages) with an ETA in the log, and the dev curve in `output_dir/dev_curve.jsonl`.

    CPU-minutes add up over restarts: a resumed process starts from the last row written before the kill.
    """

    def __init__(self, output_dir: str | Path, stage: int, steps_before: int, total_steps: int):
        self.output_dir = Path(output_dir)
        self.stage, self.steps_before, self.total_steps = stage, steps_before, total_steps
        self.curve = self.output_dir / "dev_curve.jsonl"
        rows = read_curve(self.curve)
        self.cpu_offset = max((r["cpu_min"] for r in rows), default=0.0) * 60 - cpu_seconds()
        self.started = time.time()
        self.start_step = None
        logger.info("this machine: %.0f GFLOPS fp32 matmul (compare step times across machines)", matmul_gflops())

    def on_step_end(self, args, state, control, **kwargs):
        if self.start_step is None:
            self.start_step = state.global_step - 1
        done = self.steps_before + state.global_step
        rate = (time.time() - self.started) / max(1, state.global_step - self.start_step)
        if state.global_step % max(1, args.logging_steps) == 0:
            eta = rate * (self.total_steps - done)
            logger.info(
                "run progress: step %d/%d (stage %d), %.1f s/step, ETA %d min",
                done,
                self.total_steps,
                self.stage,
                rate,
                round(eta / 60),
            )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        scores = main_scores(metrics or {})
        row = {
            "step": self.steps_before + state.global_step,
            "stage": self.stage,
            "cpu_min": (cpu_seconds() + self.cpu_offset) / 60,
            "scores": scores,
            "mean": sum(scores.values()) / max(1, len(scores)),
        }
        with self.curve.open("a") as f:
            f.write(json.dumps(row) + "\n")
        plot_curve(self.curve, self.output_dir / "dev_curve.png")
        logger.info("dev scores at step %d: %s", row["step"], {k: round(100 * v, 1) for k, v in scores.items()})


def read_curve(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curve(path: Path, png: Path) -> None:
    rows = read_curve(path)
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = [r["cpu_min"] for r in rows]
    for task in sorted({t for r in rows for t in r["scores"]}):
        ax.plot(x, [100 * r["scores"].get(task, float("nan")) for r in rows], marker=".", label=task)
    ax.plot(x, [100 * r["mean"] for r in rows], color="black", linewidth=2, label="mean")
    ax.set(xlabel="training CPU-minutes", ylabel="dev score x 100", title="NV-Embed: dev score vs CPU-minutes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def dev_scores(model, instructions: bool = True, limit: int = 100) -> dict[str, float]:
    """{task: main score} of a SentenceTransformer on the dev sets of `dev_evaluators`."""
    metrics = {}
    for evaluator in dev_evaluators(limit, instructions=instructions):
        metrics.update(evaluator(model))
    return main_scores(metrics)


def card_results(scores: dict[str, float]) -> dict[str, dict]:
    """Dev scores of `dev_scores` / the dev curve as `publish.card.render_card` eval results (metric, task type)."""
    from publish.card import KIND_TO_TASK_TYPE

    metrics = {"sts": "cosine_spearman", "classification": "accuracy", "retrieval": "ndcg_at_10"}
    results = {}
    for task, value in scores.items():
        kind = "sts" if task in STS_DEV else "classification" if task in CLASSIFICATION_DEV else "retrieval"
        results[task] = {
            "metric": metrics[kind],
            "value": value,
            "dataset_split": "dev",
            "task_type": KIND_TO_TASK_TYPE[kind],
        }
    return results


def curve_markdown(rows: list[dict]) -> str:
    """The dev curve as a markdown table: one row per evaluation (step, stage, CPU-minutes, every task, mean)."""
    tasks = sorted({t for r in rows for t in r["scores"]})
    lines = [
        "| step | stage | CPU-min | " + " | ".join(tasks) + " | mean |",
        "|---:|---:|---:" + "|---:" * (len(tasks) + 1) + "|",
    ]
    for r in rows:
        cells = [f"{100 * r['scores'][t]:.1f}" if t in r["scores"] else "-" for t in tasks]
        lines.append(
            f"| {r['step']} | {r['stage']} | {r['cpu_min']:.1f} | " + " | ".join(cells) + f" | {100 * r['mean']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m train.monitor runs/train: the run's dev curve as a table (and its PNG redrawn)
    import sys

    run = Path(sys.argv[1])
    plot_curve(run / "dev_curve.jsonl", run / "dev_curve.png")
    print(curve_markdown(read_curve(run / "dev_curve.jsonl")))
