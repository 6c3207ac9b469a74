"""Command line: build (and cache) the training tasks and print their sizes.

Example:
    python -m train.data build
    python -m train.data build --tasks debian_section pydoc_module --cache-dir /tmp/nvembed_data --rebuild
"""

from __future__ import annotations

import argparse
import logging

import datasets

from . import SPLITS, TASKS, default_cache_dir, load_source


logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build and cache tasks, then print their sizes")
    build.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS), help="default: all")
    build.add_argument("--cache-dir", default=None, help=f"default: $NVEMBED_DATA_DIR or {default_cache_dir()}")
    build.add_argument("--rebuild", action="store_true", help="ignore the cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    datasets.disable_progress_bars()

    rows = []
    for name in args.tasks:
        data = load_source(name, args.cache_dir, rebuild=args.rebuild)
        rows.append((name, TASKS[name].kind, *(data[split].num_rows for split in SPLITS)))
    header = ("task", "kind", *SPLITS)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


if __name__ == "__main__":
    main()
