"""Fetch the Debian packages that carry the broad training text, by name, into a folder of the project's own.

The packages are downloaded with ``apt-get download`` and unpacked with ``dpkg-deb -x`` under
``$NVEMBED_PACKAGES_DIR`` (default ``<repo>/data_cache/packages/<package>/``), not installed: installing would add
files under ``/usr/share/doc`` and ``/usr/share/info``, which other tasks (``doc_paragraphs``) and the out-of-domain
evaluation (``eval/ood.py`` reads every Info manual there) would then pick up. ``apt-get download`` needs apt's
package lists (``make system-deps``) but not root. A ``fetched.json`` in each folder records the version unpacked.

    python -m train.data fetch            # every package the broad sources read (make data runs it)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .core import SourceNotFoundError


logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def packages_dir() -> Path:
    """``$NVEMBED_PACKAGES_DIR`` if set, else ``<repo>/data_cache/packages``."""
    return Path(os.environ.get("NVEMBED_PACKAGES_DIR") or REPO_ROOT / "data_cache" / "packages")


def package_root(package: str, root: Path | None = None) -> Path:
    """The folder ``package`` is unpacked in.

    Raises:
        SourceNotFoundError: It was not fetched; the message names the command that fetches it.
    """
    folder = (root or packages_dir()) / package
    if not (folder / "fetched.json").is_file():
        raise SourceNotFoundError(
            f"Debian package {package!r} is not unpacked under {folder}. Fetch the broad training text with "
            f"`python -m train.data fetch` (or `make data`); it needs apt's package lists (`make system-deps`)."
        )
    return folder


def fetch_package(package: str, root: Path | None = None) -> Path:
    """Downloads ``package`` with ``apt-get download`` and unpacks it into ``root/package`` (skipped if done).

    Raises:
        SourceNotFoundError: apt does not know the package or the download failed; the message has apt's output.
    """
    folder = (root or packages_dir()) / package
    if (folder / "fetched.json").is_file():
        return folder
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SourceNotFoundError(f"Fetching {package!r} needs apt-get and dpkg-deb (a Debian or Ubuntu machine).")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = sorted(Path(tmp).glob("*.deb"))
        if done.returncode != 0 or not debs:
            raise SourceNotFoundError(
                f"`apt-get download {package}` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}. "
                "Run `apt-get update` (make system-deps) first."
            )
        staging = folder.with_name(f"{package}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(staging)], check=True)
        version = subprocess.run(
            ["dpkg-deb", "-f", str(debs[0]), "Version"], check=True, capture_output=True, text=True
        ).stdout.strip()
        (staging / "fetched.json").write_text(
            json.dumps({"package": package, "version": version, "deb": debs[0].name})
        )
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    logger.info("fetched %s %s into %s", package, version, folder)
    return folder
