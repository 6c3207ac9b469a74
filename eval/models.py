"""Systems to evaluate, built from a short spec string, as objects `mteb.evaluate` accepts.

Specs:
    PATH                      a SentenceTransformer folder (our NV-Embed folders load with trust_remote_code=True);
                              queries get the task instruction, passages none
    raw-mean[:PATH_OR_GGUF]   the raw causal backbone, mean pooling over the text tokens (instruction excluded)
    raw-last[:PATH_OR_GGUF]   the raw causal backbone, last-token pooling
    minilm                    the bundled all-MiniLM-L6-v2 (no instructions: it was not trained with them)
    st:PATH                   any other sentence-transformers folder used as all-MiniLM-L6-v2 is, without instructions
                              (e.g. a teacher from `train.teachers`)
    bm25                      bm25s lexical retrieval (retrieval tasks only)

How the instruction reaches the model: `InstructEncoder.encode` does for text what mteb's
`InstructSentenceTransformerModel.encode` does (that class's constructor insists on loading the model itself, so it is
not reused): it reads `task_metadata.prompt` through mteb's `AbsEncoder.get_task_instruction`, formats it with
`instruction_template` and calls `model.encode(texts, prompt=...)`. SentenceTransformer then knows the prompt length,
so pooling with `include_prompt=False` (NV-Embed's instruction mask) drops the instruction tokens. mteb's plain
`SentenceTransformerEncoderWrapper` would NOT do this: it only looks up `model.prompts` by task name and ignores
`TaskMetadata.prompt`.

Example:
    >>> from eval.models import load_model
    >>> model = load_model("bm25")
    >>> model.mteb_model_meta.name
    'nvembed-eval/bm25'
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_implementations.bm25 import BM25Search
from mteb.models.model_meta import ScoringFunction
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
from mteb.types import PromptType

from modeling_nvembed import format_instruction
from nvembed_defaults import default_backbone_path, peer_model_path, raw_backbone


logger = logging.getLogger(__name__)

RAW_POOLING = {"raw-mean": "mean", "raw-last": "lasttoken"}
MODEL_NAME_PREFIX = "nvembed-eval"


def instruction_template(instruction: str, prompt_type: PromptType | None = None) -> str:
    """mteb `instruction_template`: the NV-Embed query prefix, or nothing when the task has no instruction."""
    return format_instruction(instruction) if instruction else ""


def _meta(name: str, revision: str | None = None, **fields: Any) -> ModelMeta:
    return ModelMeta.create_empty(
        overwrites={"name": f"{MODEL_NAME_PREFIX}/{name}", "revision": revision or "local", **fields}
    )


class InstructEncoder(AbsEncoder):
    """An mteb encoder around an already built SentenceTransformer (or any object with its `encode`) that gives queries
    the task instruction and passages none.

    Queries get `instruction_template(task_metadata.prompt)` as `prompt=`; passages (`PromptType.document`) get no
    prompt by design; symmetric tasks (one prompt string, no prompt type) instruct every input.

    Args:
        model: A `SentenceTransformer`, or any object with `encode(texts, prompt=None, **kwargs) -> array`.
        name: Name under which results are saved.
        revision: Revision recorded in the results.
    """

    def __init__(self, model: Any, name: str, revision: str | None = None) -> None:
        self.model = model
        self.instruction_template = instruction_template
        self.mteb_model_meta = _meta(name, revision, use_instructions=True)

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> Any:
        # As mteb's wrapper: passages get None, a task without instruction "" (None would let a folder's
        # default_prompt_name apply)
        prompt = None
        if prompt_type != PromptType.document:
            prompt = self.get_task_instruction(task_metadata, prompt_type)
        texts = [text for batch in inputs for text in batch["text"]]
        return self.model.encode(texts, prompt=prompt, **kwargs)


def _capped(model: Any, max_seq_length: int | None) -> Any:
    """The same token budget for every system in a comparison (and a bounded cost on CPU)."""
    if max_seq_length is not None:
        model.max_seq_length = min(model.max_seq_length or max_seq_length, max_seq_length)
    return model


def plain_folder(spec: str) -> Path | None:
    """The sentence-transformers folder a peer spec names, encoded without instructions; None for any other spec.

    "minilm" is the bundled all-MiniLM-L6-v2, "st:PATH" any other folder (a teacher, say).
    """
    if spec == "minilm":
        return peer_model_path()
    if spec.startswith("st:"):
        return Path(spec.removeprefix("st:"))
    return None


def load_model(spec: str, max_seq_length: int | None = None) -> Any:
    """Builds the system named by `spec` (see the module docstring) as an mteb-compatible model.

    Args:
        spec: "bm25", "minilm", "st:PATH", "raw-mean[:PATH]", "raw-last[:PATH]" or a SentenceTransformer folder.

    Returns:
        An object with `mteb_model_meta` that `mteb.evaluate` runs as is.

    Raises:
        FileNotFoundError: The folder or GGUF file does not exist.
    """
    if spec == "bm25":
        # PyStemmer is not installed: "" switches stemming off, "en" keeps bm25s' English stopwords.
        model = BM25Search(stopwords="en", stemmer_language="")
        model.mteb_model_meta = _meta("bm25", model_type=["sparse"])
        return model
    folder = plain_folder(spec)
    if folder is not None:
        from sentence_transformers import SentenceTransformer

        if not (folder / "modules.json").is_file():
            raise FileNotFoundError(
                f"model '{spec}': {folder} is not a sentence-transformers folder (no modules.json)"
            )
        wrapper = SentenceTransformerEncoderWrapper(
            _capped(SentenceTransformer(str(folder), device="cpu"), max_seq_length)
        )
        name = "minilm" if spec == "minilm" else folder.resolve().name
        wrapper.mteb_model_meta = _meta(name, similarity_fn_name=ScoringFunction.COSINE, use_instructions=False)
        return wrapper
    kind, _, source = spec.partition(":")
    if kind in RAW_POOLING:
        name = f"{kind}-{Path(source).stem if source else default_backbone_path().stem}"
        return InstructEncoder(_capped(raw_backbone(RAW_POOLING[kind], source), max_seq_length), name=name)
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(
            f"model '{spec}' is not a folder nor one of: bm25, minilm, st:PATH, raw-mean[:PATH_OR_GGUF], "
            "raw-last[:PATH_OR_GGUF]"
        )
    from sentence_transformers import SentenceTransformer

    model = _capped(SentenceTransformer(str(path), trust_remote_code=True), max_seq_length)
    return InstructEncoder(model, name=path.resolve().name, revision=folder_revision(path))


def folder_revision(path: Path) -> str:
    """A short fingerprint of a model folder's weights and configs (each file's name and the SHA-256 of its content):
    the revision mteb records, so results reused with `--resume` can never belong to an earlier model saved in the
    same folder, even one of the same size written within the file system's mtime resolution (or copied with its
    mtime kept). Reads every weight file once (about a second per GB)."""
    import hashlib

    weights = sorted(p for p in path.rglob("*") if p.suffix in {".safetensors", ".bin", ".json"} and p.is_file())
    if not weights:
        raise FileNotFoundError(f"{path} holds no weights or config files")
    digest = hashlib.sha256()
    for p in weights:
        with open(p, "rb") as f:
            content = hashlib.file_digest(f, "sha256").hexdigest()
        digest.update(f"{p.relative_to(path)}:{content}\n".encode())
    return digest.hexdigest()[:12]


def supports_task(model: Any, task: Any) -> bool:
    """BM25 only retrieves; every encoder runs every task."""
    return not isinstance(model, BM25Search) or task.metadata.type == "Retrieval"
