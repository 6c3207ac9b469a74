"""Run one or several systems over tasks with `mteb.evaluate`, keep mteb's result JSON, add Markdown and a chart.

Example:
    >>> from eval.run import evaluate
    >>> scores = evaluate("bm25", ["debian_description"], "runs/eval/bm25")  # doctest: +SKIP
    >>> scores["debian_description"]  # nDCG@10 on the test split  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mteb
from mteb.cache import ResultCache
from mteb.results import TaskResult

from eval.models import load_model, supports_task
from eval.tasks import EvalDataMissingError, get_tasks


logger = logging.getLogger(__name__)


class EvalDataUnavailableError(RuntimeError):
    """A standard mteb task's dataset is not on this machine (offline); the message names the dataset."""


# What the command-line entry points report as `error: ...` with exit code 2 (bad input or missing data), not a trace.
USER_ERRORS = (EvalDataMissingError, EvalDataUnavailableError, KeyError, FileNotFoundError, ValueError)


def preload(task: Any) -> None:
    """Loads a task's data now, so a missing export or an offline Hub dataset fails before any model work."""
    try:
        task.load_data()
    except EvalDataMissingError:
        raise
    except Exception as e:  # datasets raises ConnectionError, DatasetNotFoundError, FileNotFoundError, ...
        dataset = task.metadata.dataset
        raise EvalDataUnavailableError(
            f"Task '{task.metadata.name}' needs the dataset {dataset['path']} (revision {dataset['revision']}), which "
            f"is not in the local Hugging Face cache and cannot be downloaded here (HF_HUB_OFFLINE / no network): "
            f"{type(e).__name__}: {e}"
        ) from e


def main_scores(task_results: Sequence[TaskResult], split: str) -> dict[str, float]:
    """Task name -> mteb main score (0..1) on `split`."""
    return {result.task_name: float(result.get_score(splits=[split])) for result in task_results}


def evaluate_model(
    model: Any,
    tasks: Sequence[Any],
    output_dir: str | Path,
    split: str = "test",
    batch_size: int = 32,
    resume: bool = False,
) -> dict[str, float]:
    """Runs an already built mteb model on built tasks; results land in `output_dir` as mteb's own cache layout.

    With `resume`, a task whose result JSON is already in `output_dir` for this model and revision (NV-Embed folders:
    a fingerprint of their weights) is read back instead of rerun: a killed comparison picks up where it stopped.

    Returns:
        Task name -> main score on `split`. Tasks the model cannot run (BM25 on non-retrieval) are skipped with a log.
    """
    runnable = [task for task in tasks if supports_task(model, task)]
    for task in tasks:
        if task not in runnable:
            logger.warning("skipping %s for %s: BM25 only retrieves", task.metadata.name, model.mteb_model_meta.name)
    if not runnable:
        return {}
    for task in runnable:
        preload(task)
    result = mteb.evaluate(
        model,
        runnable,
        cache=ResultCache(output_dir),
        overwrite_strategy="only-missing" if resume else "always",
        encode_kwargs={"batch_size": batch_size},
        co2_tracker=False,
        show_progress_bar=False,
    )
    return main_scores(result.task_results, split)


def evaluate(
    model_spec: str,
    tasks: Sequence[str] | None = None,
    output_dir: str | Path = "runs/eval",
    split: str = "test",
    data_dir: str | Path | None = None,
    batch_size: int = 32,
    max_seq_length: int | None = None,
) -> dict[str, float]:
    """Evaluates one system and writes mteb's result JSON plus `results.md` to `output_dir`.

    Args:
        model_spec: See `eval.models.load_model` (an ST folder, raw-mean:..., raw-last:..., minilm, bm25).
        tasks: Local task names or mteb task names; `None` means all local tasks.
        output_dir: Where `results/<model>/<revision>/<task>.json` and `results.md` go.
        split: "test" or "dev".
        data_dir: Export folder of the local tasks (default `$NVEMBED_EVAL_DIR` or `<repo>/data_cache/eval`).
        batch_size: Encoding batch size.

    Returns:
        Task name -> main score (0..1).

    Example:
        >>> evaluate("minilm", ["debian_tags_pairs"], "runs/eval/minilm")  # doctest: +SKIP
        {'debian_tags_pairs': 0.61...}
    """
    task_objects = get_tasks(list(tasks) if tasks else None, data_dir=data_dir, split=split)
    for task in task_objects:  # fail on missing data before loading a model
        preload(task)
    model = load_model(model_spec, max_seq_length)
    scores = evaluate_model(model, task_objects, output_dir, split=split, batch_size=batch_size)
    name = model.mteb_model_meta.name.split("/", 1)[-1]
    write_markdown({name: scores}, task_objects, Path(output_dir) / "results.md", split=split)
    return scores


def main_score_names(tasks: Sequence[Any]) -> dict[str, str]:
    return {task.metadata.name: task.metadata.main_score for task in tasks}


def markdown_table(results: dict[str, dict[str, float]], tasks: Sequence[Any], split: str = "test") -> str:
    """Rows are systems, columns tasks (main score x 100) and their average over the tasks the system ran."""
    names = [task.metadata.name for task in tasks]
    metrics = main_score_names(tasks)
    header = ["system", *(f"{name} ({metrics[name]})" for name in names), "average"]
    lines = [
        f"Split: {split}. Scores are mteb main scores x 100; '-' = not run.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for system, scores in results.items():
        cells = [f"{100 * scores[name]:.2f}" if name in scores else "-" for name in names]
        ran = [scores[name] for name in names if name in scores]
        average = f"{100 * sum(ran) / len(ran):.2f}" if ran else "-"
        lines.append("| " + " | ".join([system, *cells, average]) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(
    results: dict[str, dict[str, float]], tasks: Sequence[Any], path: Path, split: str = "test"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_table(results, tasks, split=split), encoding="utf-8")
    logger.info("wrote %s", path)
    return path


def bar_chart(results: dict[str, dict[str, float]], tasks: Sequence[Any], path: Path) -> Path:
    """Grouped bars: one group per task, one bar per system (main score x 100)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [task.metadata.name for task in tasks]
    systems = list(results)
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) + 2), 4))
    for i, system in enumerate(systems):
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(names))]
        ys = [100 * results[system].get(name, float("nan")) for name in names]
        ax.bar(xs, ys, width=width, label=system)
    ax.set_xticks(range(len(names)), [f"{n}\n({t.metadata.main_score})" for n, t in zip(names, tasks)], fontsize=8)
    ax.set_ylabel("main score x 100")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
