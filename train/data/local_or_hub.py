"""Where a dataset is read from: a local copy (a ``save_to_disk`` folder, or a folder or file of jsonl, json, parquet
or csv) or the Hugging Face Hub, failing within seconds with a message saying what to do when a Hub name cannot be
reached (instead of datasets' retry loop). Below ``hub.py`` (row datasets) and ``beir.py`` (BEIR tables), which
both read through it."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import datasets


LOCAL_DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
HUB_CONNECT_TIMEOUT_S = 3.0


class HubUnavailableError(ConnectionError):
    """Raised when a dataset name needs the Hub and the Hub cannot be reached; the message says how to go local."""


def looks_like_path(name: str) -> bool:
    """A name that cannot be a Hub id ("owner/name" or "name"): absolute, relative, home, or a data file name."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or Path(name).suffix in LOCAL_DATA_SUFFIXES


def check_available(name_or_path: str | Path, subset: str | None = None) -> None:
    """Fails within seconds when a dataset can be loaded neither from a local path nor from the Hub (or its cache).

    Raises:
        FileNotFoundError: ``name_or_path`` looks like a path but does not exist.
        HubUnavailableError: A Hub name, and the Hub is unreachable, or offline with no cached copy.
    """
    name = str(name_or_path)
    if Path(name).expanduser().exists():
        return
    if looks_like_path(name):
        raise FileNotFoundError(f"No dataset at {name!r} (a path, not a Hub name)")
    _check_hub_reachable(name)
    if datasets.config.HF_HUB_OFFLINE:
        try:
            datasets.load_dataset_builder(name, subset)  # offline: answers from the local cache at once
        except (ConnectionError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as error:
            raise HubUnavailableError(
                _hub_message(name, "offline mode, HF_HUB_OFFLINE=1, and no cached copy")
            ) from error


def _is_save_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _load_local(path: Path, split: str) -> datasets.Dataset:
    if path.is_dir() and _is_save_to_disk(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path} has no split {split!r}; its splits: {sorted(loaded)}")
            return loaded[split]
        return loaded  # a single Dataset: it is the split
    if path.is_file():
        builder = LOCAL_DATA_SUFFIXES.get(path.suffix)
        if builder is None:
            raise ValueError(f"{path}: unsupported file type; use one of {sorted(LOCAL_DATA_SUFFIXES)}")
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    files = [f for f in sorted(path.rglob("*")) if f.suffix in LOCAL_DATA_SUFFIXES]
    if not files:
        raise ValueError(
            f"{path} holds neither a save_to_disk dataset nor data files ({', '.join(sorted(LOCAL_DATA_SUFFIXES))})"
        )
    # datasets infers splits from file names (train.jsonl, test-00000.parquet, ...); other names all go to "train".
    loaded = datasets.load_dataset(str(path))
    if split not in loaded:
        raise ValueError(f"{path} has no split {split!r}; its splits: {sorted(loaded)}")
    return loaded[split]


def _hub_message(name: str, reason: str) -> str:
    return (
        f"Cannot load {name!r} from the Hugging Face Hub ({reason}). Without Hub access, save the dataset on a "
        "machine that has it (`load_dataset(...).save_to_disk(folder)` or `.to_json('train.jsonl')`) and pass that "
        "folder or file path instead of the name."
    )


def _check_hub_reachable(name: str, timeout: float = HUB_CONNECT_TIMEOUT_S) -> None:
    """Fails within ``timeout`` seconds when the Hub cannot be reached (datasets would retry for ~30 s)."""
    if datasets.config.HF_HUB_OFFLINE:
        return  # datasets raises at once in offline mode (or loads its local cache)
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        reason = f"{endpoint.hostname}:{port} unreachable: {error}; set HF_HUB_OFFLINE=1 to use only cached copies"
        raise HubUnavailableError(_hub_message(name, reason)) from error


def _load_hub(name: str, subset: str | None, split: str) -> datasets.Dataset:
    _check_hub_reachable(name)
    try:
        return datasets.load_dataset(name, subset, split=split)
    except (ConnectionError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as error:
        reason = "offline mode, HF_HUB_OFFLINE=1, and no cached copy" if datasets.config.HF_HUB_OFFLINE else str(error)
        raise HubUnavailableError(_hub_message(name, reason)) from error
