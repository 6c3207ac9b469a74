"""Which files of a model folder go to the Hub: an allow-list, a refusal of pickled weights, and a token scan.

Everything not on the allow-list stays home (checkpoints/, optimizer states, logs, runs/, .env, ...). The staged copy
holds exactly the files that will be uploaded, so what is verified is what is published.
"""

import fnmatch
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path


# Files loaded by AutoModel / SentenceTransformer, plus the card and the instruction list.
ALLOWED_ROOT_FILES = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "configuration_nvembed.py",
    "modeling_nvembed.py",
    "sentence_transformer_nvembed.py",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "instructions.json",
    "README.md",
)
# sentence-transformers module folders after the Transformer ("1_Pooling/config.json", "2_Dense/model.safetensors").
ST_MODULE_DIR = re.compile(r"^[1-9][0-9]*_[A-Za-z0-9]+$")
ALLOWED_MODULE_FILES = ("*.json", "*.safetensors")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Training by-products: never listed, never uploaded, not even looked into.
SKIPPED_DIRS = {"checkpoints", "runs", "logs", "wandb", ".git", "__pycache__", ".ipynb_checkpoints"}
TOKEN_PATTERN = re.compile(rb"hf_[A-Za-z0-9]{30,}")
_SCAN_CHUNK = 8 << 20


class PublishError(Exception):
    """A check failed; the message says what and how to fix it. Nothing was uploaded."""


@dataclass(frozen=True)
class StagedFile:
    path: str  # relative, posix
    size: int


def is_allowed(relpath: str) -> bool:
    """True when `relpath` (posix, relative to the model folder) is on the upload allow-list."""
    parts = relpath.split("/")
    if len(parts) == 1:
        return any(fnmatch.fnmatchcase(parts[0], pattern) for pattern in ALLOWED_ROOT_FILES)
    if len(parts) == 2 and ST_MODULE_DIR.match(parts[0]):
        return any(fnmatch.fnmatchcase(parts[1], pattern) for pattern in ALLOWED_MODULE_FILES)
    return False


def walk(model_dir: Path) -> list[str]:
    """All regular files under `model_dir` (relative posix paths); a folder of `SKIPPED_DIRS` is one "name/" entry."""
    found = []
    for root, dirs, files in os.walk(model_dir):
        found += [Path(root, d).relative_to(model_dir).as_posix() + "/" for d in sorted(dirs) if d in SKIPPED_DIRS]
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(root, name)
            if path.is_file():
                found.append(path.relative_to(model_dir).as_posix())
    return found


def select_files(model_dir: str | Path) -> tuple[list[str], list[str]]:
    """Split the folder into (files to upload, files left out).

    Raises:
        PublishError: a pickled weight file sits where weights are loaded from (root or an ST module folder), or there
            are no *.safetensors weights.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PublishError(f"{model_dir} is not a folder.")
    files = walk(model_dir)
    # Only where weights are loaded from; pickles elsewhere are simply not uploaded.
    pickled = [
        f for f in files if f.endswith(PICKLE_SUFFIXES) and ("/" not in f or ST_MODULE_DIR.match(f.split("/")[0]))
    ]
    if pickled:
        raise PublishError(
            f"Refusing to publish pickled file(s) {pickled} from {model_dir}: pickles can run code when loaded. "
            "Save weights as safetensors (model.save_pretrained(..., safe_serialization=True)) and move the pickles "
            "(training_args.bin, optimizer.pt, ...) out of the folder."
        )
    selected = [f for f in files if is_allowed(f)]
    if not any(f.endswith(".safetensors") for f in selected):
        raise PublishError(f"No *.safetensors weights in {model_dir}; nothing to publish.")
    return selected, [f for f in files if f not in selected]


def find_token(path: Path) -> bool:
    """True when the file's bytes contain something shaped like a Hugging Face token (hf_ + 30 or more alnum)."""
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(_SCAN_CHUNK):
            if TOKEN_PATTERN.search(tail + chunk):
                return True
            tail = (tail + chunk)[-64:]  # a match needs only 33 bytes
    return False


def scan_for_tokens(folder: str | Path, relpaths: list[str]) -> None:
    """Raise `PublishError` naming the files (never the token) whose content looks like a HF token."""
    leaks = [p for p in relpaths if find_token(Path(folder) / p)]
    if leaks:
        raise PublishError(
            f"Refusing to publish: {leaks} contain(s) text that looks like a Hugging Face token (hf_...). "
            "Remove it (and revoke the token at https://huggingface.co/settings/tokens if it was real)."
        )


def stage(model_dir: str | Path, staging_dir: str | Path, readme: str | None = None) -> list[StagedFile]:
    """Copy the allow-listed files of `model_dir` into the empty folder `staging_dir` and scan them for tokens.

    Args:
        readme: Text written as the staged README.md instead of the folder's own.

    Returns:
        The staged files, sorted, with their sizes.
    """
    model_dir, staging_dir = Path(model_dir), Path(staging_dir)
    selected, _ = select_files(model_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    if any(staging_dir.iterdir()):
        raise PublishError(f"Staging folder {staging_dir} is not empty.")
    for relpath in selected:
        target = staging_dir / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / relpath, target)  # follows links: the Hub gets content, never a link
    if readme is not None:
        (staging_dir / "README.md").write_text(readme, encoding="utf-8")
        if "README.md" not in selected:
            selected.append("README.md")
    selected.sort()
    scan_for_tokens(staging_dir, selected)
    return [StagedFile(p, (staging_dir / p).stat().st_size) for p in selected]
