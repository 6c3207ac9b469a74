"""Command line: build (and cache) the training tasks and print their sizes.

Example:
    python -m train.data build
    python -m train.data build --tasks debian_section pydoc_module --cache-dir /tmp/nvembed_data --rebuild
    python -m train.data fetch    # download and unpack the Debian packages of the broad text (broad_sources.py)
    python -m train.data sources  # the broad sources: package, kind of text, license, documents and texts
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
    commands.add_parser("fetch", help="download and unpack the Debian packages the broad sources read")
    commands.add_parser("sources", help="list the broad sources with their license and size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    datasets.disable_progress_bars()
    if args.command == "fetch":
        from .broad_sources import DEBIAN_PACKAGES
        from .packages import fetch_package

        for package in DEBIAN_PACKAGES:
            fetch_package(package)
        return
    if args.command == "sources":
        _print_sources()
        return

    rows = []
    for name in args.tasks:
        data = load_source(name, args.cache_dir, rebuild=args.rebuild)
        rows.append((name, TASKS[name].kind, *(data[split].num_rows for split in SPLITS)))
    header = ("task", "kind", *SPLITS)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


def _print_sources() -> None:
    from .broad import _clean
    from .broad_sources import SOURCES

    header = ("source", "package", "registry", "kind", "license", "documents", "passages")
    rows = [header]
    for name, source in SOURCES.items():
        docs = list(source.read())
        passages = {p for doc in docs for section in doc.sections for p in _clean(section.paragraphs)}
        rows.append(
            (name, source.package, source.registry, source.text_kind, source.license, len(docs), len(passages))
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


if __name__ == "__main__":
    main()
