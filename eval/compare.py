"""`python -m eval.compare --models name=SPEC ... [--tasks ...] --output-dir DIR`: systems side by side.

Writes mteb's JSON per system under DIR/<name>/, one Markdown table (DIR/compare.md: rows systems, columns tasks and
average) and a bar chart (DIR/compare.png). SPEC is anything `python -m eval` takes.

Example:
    python -m eval.compare --models bm25=bm25 minilm=minilm raw-mean=raw-mean --tasks debian_description \\
        --output-dir runs/compare
"""

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402


logger = logging.getLogger(__name__)


def parse_models(items: Sequence[str]) -> dict[str, str]:
    """`["bm25=bm25", "ours=artifacts/x"]` -> `{"bm25": "bm25", "ours": "artifacts/x"}`; a bare SPEC names itself."""
    models = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep:
            name, spec = Path(item).name or item, item
        if not name or not spec:
            raise ValueError(f"--models takes name=SPEC, got {item!r}")
        if name in models:
            raise ValueError(f"system name {name!r} given twice")
        models[name] = spec
    return models


def compare(
    models: dict[str, str],
    tasks: Sequence[str] | None,
    output_dir: str | Path,
    split: str = "test",
    data_dir: str | Path | None = None,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    resume: bool = False,
) -> dict[str, dict[str, float]]:
    """Evaluates each system on the same tasks; returns system -> task -> main score and writes compare.md/.png.

    Example:
        >>> compare({"bm25": "bm25", "minilm": "minilm"}, ["debian_description"], "runs/compare")  # doctest: +SKIP
    """
    from eval.models import load_model
    from eval.run import bar_chart, evaluate_model, preload, write_markdown
    from eval.tasks import get_tasks

    output_dir = Path(output_dir)
    task_objects = get_tasks(list(tasks) if tasks else None, data_dir=data_dir, split=split)
    for task in task_objects:
        preload(task)
    results = {}
    for name, spec in models.items():
        logger.info("evaluating %s (%s)", name, spec)
        model = load_model(spec, max_seq_length)
        results[name] = evaluate_model(
            model, task_objects, output_dir / name, split=split, batch_size=batch_size, resume=resume
        )
    write_markdown(results, task_objects, output_dir / "compare.md", split=split)
    bar_chart(results, task_objects, output_dir / "compare.png")
    (output_dir / "compare.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="name=SPEC, SPEC as for `python -m eval`")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--split", choices=["test", "dev"], default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=None, help="token cap applied to every system")
    parser.add_argument(
        "--resume", action="store_true", help="reuse result JSON already in --output-dir for the same model revision"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from eval.run import USER_ERRORS

    try:
        results = compare(
            parse_models(args.models),
            args.tasks,
            args.output_dir,
            split=args.split,
            data_dir=args.data_dir,
            batch_size=args.batch_size,
            max_seq_length=args.max_seq_length,
            resume=args.resume,
        )
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((Path(args.output_dir) / "compare.md").read_text(encoding="utf-8"))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
