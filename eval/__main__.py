"""`python -m eval MODEL [--tasks ...] [--output-dir DIR] [--split test|dev]`: one system, mteb JSON + results.md.

MODEL: a SentenceTransformer folder, raw-mean[:PATH_OR_GGUF], raw-last[:PATH_OR_GGUF], minilm or bm25.
Tasks: our local tasks (default: all; data from `python -m eval.export`) or standard mteb task names, which need
their dataset in the local Hugging Face cache: this command runs offline unless HF_HUB_OFFLINE=0 is set.

Example:
    python -m eval.export
    python -m eval minilm --tasks debian_description debian_tags_pairs --output-dir runs/eval/minilm
"""

import os


# Before datasets/huggingface_hub are imported: offline, a missing dataset fails at once, not after network waits.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="SentenceTransformer folder, raw-mean[:PATH], raw-last[:PATH], minilm or bm25")
    parser.add_argument("--tasks", nargs="+", default=None, help="task names (default: all local tasks)")
    parser.add_argument("--output-dir", default="runs/eval", help="where mteb's JSON and results.md go")
    parser.add_argument("--split", choices=["test", "dev"], default="test")
    parser.add_argument(
        "--data-dir", default=None, help="export folder (default: $NVEMBED_EVAL_DIR or data_cache/eval)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=None, help="token cap (default: the model's own)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from eval.run import USER_ERRORS, evaluate

    try:
        scores = evaluate(
            args.model,
            args.tasks,
            args.output_dir,
            split=args.split,
            data_dir=args.data_dir,
            batch_size=args.batch_size,
            max_seq_length=args.max_seq_length,
        )
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(scores, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
