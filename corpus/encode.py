"""Encode a large corpus with a SentenceTransformer (NV-Embed or any other) into resumable shards.

    python -m corpus.encode MODEL --input FILES_OR_DATASET_DIR --output OUT_DIR [--text-column text] [--id-column id]
        [--shard-size 10000] [--batch-size 32] [--num-processes N] [--prompt-name NAME] [--format npy|parquet]

The rows are cut into fixed shards by row range ([0, shard_size), [shard_size, 2 * shard_size), ...). Each shard is
encoded by one worker process (spawned; each loads the model once, one GPU per process when there are GPUs) and
written atomically: to a temporary name, then renamed. Per shard `i` the output is

    npy:      ids-{i:05d}.npy + embeddings-{i:05d}.npy   (float32, (rows, dim); the embeddings file is renamed last)
    parquet:  shard-{i:05d}.parquet                      (columns `id` and `embedding`)

`manifest.json` records the shard ranges, the model path and a hash of everything that decides the output (model
files, input files, columns, shard and batch size, prompt, format, library versions). A rerun on the same OUT_DIR
skips the shards already written, after checking that the manifest matches; a different configuration is refused.

Inside a shard, `SentenceTransformer.encode` sorts the texts by length before batching (less padding) and restores
their order, so row k of a shard's embeddings is the text of row `start + k`, whose id is `ids[k]`. Ids come from
`--id-column` (default: the `id` column if there is one, else the row number).

Example:
    python -m corpus.encode artifacts/nvembed --input data/passages.jsonl --output runs/passages-emb \\
        --shard-size 10000 --batch-size 32 --num-processes 2 --format npy
"""

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np


logger = logging.getLogger(__name__)

FORMATS = ("npy", "parquet")
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
MODEL_FINGERPRINT_FILES = (
    "config.json",
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


@dataclass
class EncodeConfig:
    """Everything that decides the bytes written; its hash guards a resumed run.

    Args:
        model: the model folder (absolute path).
        inputs: JSONL / parquet files, or one `save_to_disk` folder (absolute paths).
        text_column: the column to embed.
        id_column: the id column, or None for row numbers.
        shard_size: rows per shard.
        batch_size: texts per forward pass.
        prompt_name: a prompt of the model's `prompts` (e.g. "query"), or None.
        format: "npy" or "parquet".
        max_seq_length: truncation length (None: the model's own).
    """

    model: str
    inputs: list[str]
    text_column: str = "text"
    id_column: str | None = None
    shard_size: int = 10000
    batch_size: int = 32
    prompt_name: str | None = None
    format: str = "npy"
    max_seq_length: int | None = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError(f"shard_size and batch_size must be >= 1, got {self.shard_size} and {self.batch_size}")
        if not self.inputs:
            raise ValueError("no input files given")


@dataclass
class Shard:
    index: int
    start: int
    end: int

    @property
    def rows(self) -> int:
        return self.end - self.start


def load_corpus(inputs: list[str]):
    """A `datasets.Dataset` over JSONL / parquet files, or a dataset folder written by `save_to_disk`."""
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    paths = [Path(p) for p in inputs]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"input(s) not found: {missing}")
    if len(paths) == 1 and paths[0].is_dir():
        data = load_from_disk(str(paths[0]))
        if isinstance(data, DatasetDict):
            if len(data) != 1:
                raise ValueError(f"{paths[0]} holds several splits {list(data)}; save one split, or pass its folder")
            data = next(iter(data.values()))
        if not isinstance(data, Dataset):
            raise ValueError(f"{paths[0]} is not a saved datasets.Dataset")
        return data
    kinds = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
    builders = {kinds.get(p.suffix) for p in paths}
    if None in builders or len(builders) != 1:
        raise ValueError(
            f"inputs must all be .jsonl/.json or all .parquet files, or one save_to_disk folder; got {inputs}"
        )
    return load_dataset(builders.pop(), data_files=[str(p) for p in paths], split="train")


def plan_shards(num_rows: int, shard_size: int) -> list[Shard]:
    starts = range(0, num_rows, shard_size)
    return [Shard(i, start, min(start + shard_size, num_rows)) for i, start in enumerate(starts)]


def shard_files(shard: Shard, fmt: str) -> list[str]:
    """The shard's final file names; the last one is renamed into place last, so its presence marks completion."""
    if fmt == "npy":
        return [f"ids-{shard.index:05d}.npy", f"embeddings-{shard.index:05d}.npy"]
    return [f"shard-{shard.index:05d}.parquet"]


def is_done(out_dir: Path, shard: Shard, fmt: str) -> bool:
    return all((out_dir / name).is_file() for name in shard_files(shard, fmt))


def model_fingerprint(model: str) -> dict:
    """Hashes of the model's small config/tokenizer files plus the names and sizes of its weight files (hashing
    many GB of weights would cost more than a shard)."""
    folder = Path(model)
    digest = {}
    for name in MODEL_FINGERPRINT_FILES:
        if (folder / name).is_file():
            digest[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    weights = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file())
    digest["weights"] = {str(p.relative_to(folder)): p.stat().st_size for p in weights}
    return digest


def input_fingerprint(inputs: list[str]) -> dict:
    files = []
    for p in map(Path, inputs):
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return {str(f): f.stat().st_size for f in files}


def model_prompts(model: str) -> dict | None:
    path = Path(model) / "config_sentence_transformers.json"
    return json.loads(path.read_text()).get("prompts", {}) if path.is_file() else None


def build_manifest(cfg: EncodeConfig, num_rows: int, shards: list[Shard]) -> dict:
    import sentence_transformers
    import torch

    prompts = model_prompts(cfg.model)
    identity = {
        "config": asdict(cfg),
        "num_rows": num_rows,
        "model_files": model_fingerprint(cfg.model),
        "input_files": input_fingerprint(cfg.inputs),
        "prompt": None if cfg.prompt_name is None or prompts is None else prompts.get(cfg.prompt_name),
        "versions": {"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__},
    }
    config_hash = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return {
        "model": cfg.model,
        "config_hash": config_hash,
        **identity,
        "shards": [{**asdict(s), "files": shard_files(s, cfg.format)} for s in shards],
    }


def check_manifest(existing: dict, manifest: dict, out_dir: Path) -> None:
    if existing.get("config_hash") == manifest["config_hash"] and existing.get("shards") == manifest["shards"]:
        return
    differ = []
    for key in ("config", "model_files", "input_files", "versions"):
        old, new = existing.get(key) or {}, manifest[key]
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                differ.append(f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}")
    for key in ("num_rows", "prompt"):
        if existing.get(key) != manifest[key]:
            differ.append(f"{key}: {existing.get(key)!r} -> {manifest[key]!r}")
    raise ValueError(
        f"{out_dir / MANIFEST} was written by a different configuration, so its shards cannot be reused. "
        f"Differences (old -> new): {'; '.join(differ) or 'shard plan'}. Rerun with the original settings, or "
        "choose a new --output directory."
    )


def write_atomic(path: Path, write) -> None:
    """`write(tmp_path)` then rename: a killed process leaves a `.tmp-*` file, never a partial shard file."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_shard(out_dir: Path, shard: Shard, fmt: str, ids: np.ndarray, embeddings: np.ndarray) -> None:
    files = [out_dir / name for name in shard_files(shard, fmt)]
    if fmt == "npy":
        write_atomic(files[0], lambda tmp: _save_npy(tmp, ids))
        write_atomic(files[1], lambda tmp: _save_npy(tmp, embeddings))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    B, d = embeddings.shape
    column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), d)  # (B, d) -> B lists of d
    table = pa.table({"id": pa.array(ids), "embedding": column})
    write_atomic(files[0], lambda tmp: pq.write_table(table, tmp))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a path
        np.save(f, array, allow_pickle=False)


# Worker side: one process per device, the model and the corpus loaded once per process.
_worker: dict = {}


def _init_worker(cfg: EncodeConfig, out_dir: str, devices, threads: int) -> None:
    # An exception here would make Pool respawn the worker forever; keep it and raise it from the first task.
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        device = devices.get()
        if device == "cpu":
            torch.set_num_threads(threads)
        model = SentenceTransformer(cfg.model, device=device, trust_remote_code=True)
        if cfg.max_seq_length is not None:
            model.max_seq_length = cfg.max_seq_length
        _worker.update(cfg=cfg, out_dir=Path(out_dir), model=model, data=load_corpus(cfg.inputs))
    except Exception as error:  # noqa: BLE001
        _worker["error"] = error


def _encode_shard(shard: Shard) -> Shard:
    if "error" in _worker:
        raise RuntimeError(f"the worker could not load the model or corpus: {_worker['error']!r}")
    cfg, model, data = _worker["cfg"], _worker["model"], _worker["data"]
    rows = data.select(range(shard.start, shard.end))
    texts = rows[cfg.text_column]
    ids = np.asarray(rows[cfg.id_column]) if cfg.id_column else np.arange(shard.start, shard.end, dtype=np.int64)
    embeddings = model.encode(
        texts, batch_size=cfg.batch_size, prompt_name=cfg.prompt_name, convert_to_numpy=True, show_progress_bar=False
    ).astype(np.float32)  # (rows, d)
    save_shard(_worker["out_dir"], shard, cfg.format, ids, embeddings)
    return shard


def default_num_processes() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def encode_corpus(cfg: EncodeConfig, output: str | Path, num_processes: int | None = None) -> Path:
    """Encode every shard not yet on disk under `output`; returns the manifest path.

    Example:
        >>> cfg = EncodeConfig(model="artifacts/nvembed", inputs=["passages.jsonl"], shard_size=1000)  # doctest: +SKIP
        >>> encode_corpus(cfg, "runs/passages-emb", num_processes=2)  # doctest: +SKIP
    """
    import torch
    from tqdm.auto import tqdm

    cfg = replace(cfg, model=str(Path(cfg.model).resolve()), inputs=[str(Path(p).resolve()) for p in cfg.inputs])
    if not (Path(cfg.model) / "modules.json").is_file() and not (Path(cfg.model) / "config.json").is_file():
        raise ValueError(f"{cfg.model} is not a model folder (no modules.json or config.json)")
    data = load_corpus(cfg.inputs)
    if cfg.text_column not in data.column_names:
        raise ValueError(f"no text column {cfg.text_column!r}; the columns are {data.column_names}")
    if cfg.id_column is not None and cfg.id_column not in data.column_names:
        raise ValueError(f"no id column {cfg.id_column!r}; the columns are {data.column_names}")
    prompts = model_prompts(cfg.model)
    if cfg.prompt_name is not None and prompts is not None and cfg.prompt_name not in prompts:
        raise ValueError(f"the model has no prompt {cfg.prompt_name!r}; its prompts are {sorted(prompts)}")

    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(len(data), cfg.shard_size)
    manifest = build_manifest(cfg, len(data), shards)
    manifest_path = out_dir / MANIFEST
    if manifest_path.is_file():
        check_manifest(json.loads(manifest_path.read_text()), manifest, out_dir)
    else:
        foreign = [p.name for p in out_dir.iterdir() if not p.name.startswith(TMP_PREFIX)]
        if foreign:
            raise ValueError(f"{out_dir} is not empty and has no {MANIFEST} ({foreign[:5]}...); choose a new --output")
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        write_atomic(manifest_path, lambda tmp: Path(tmp).write_text(text))
    for stale in out_dir.glob(f"{TMP_PREFIX}*"):  # left by a killed run
        stale.unlink()

    pending = [s for s in shards if not is_done(out_dir, s, cfg.format)]
    done_rows = len(data) - sum(s.rows for s in pending)
    logger.info("%d of %d shards to encode (%d rows already done)", len(pending), len(shards), done_rows)
    if not pending:
        return manifest_path

    num_processes = max(1, min(num_processes or default_num_processes(), len(pending)))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    devices_for = [f"cuda:{i % gpus}" for i in range(num_processes)] if gpus else ["cpu"] * num_processes
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cpus // num_processes)  # split the cores; no oversubscription

    ctx = multiprocessing.get_context("spawn")  # CUDA and a loaded model do not survive fork
    devices = ctx.Queue()
    for device in devices_for:
        devices.put(device)
    bar = tqdm(total=len(data), initial=done_rows, unit="rows", desc=f"encode x{num_processes}", smoothing=0)
    with ctx.Pool(num_processes, initializer=_init_worker, initargs=(cfg, str(out_dir), devices, threads)) as pool:
        for shard in pool.imap_unordered(_encode_shard, pending):
            bar.update(shard.rows)
            bar.set_postfix(shards=f"{sum(is_done(out_dir, s, cfg.format) for s in shards)}/{len(shards)}")
    bar.close()
    devices.close()
    devices.join_thread()
    return manifest_path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a SentenceTransformer folder (an NV-Embed export, or any other)")
    parser.add_argument("--input", nargs="+", required=True, help="JSONL/parquet files, or one save_to_disk folder")
    parser.add_argument("--output", required=True, help="the shard folder (created; reruns resume in it)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--id-column", default=None, help="default: `id` if the data has it, else the row number")
    parser.add_argument("--shard-size", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-processes", type=int, default=None, help="default: one per GPU, else 1")
    parser.add_argument("--prompt-name", default=None, help="e.g. `query`; passages usually get none")
    parser.add_argument("--format", choices=FORMATS, default="npy")
    parser.add_argument("--max-seq-length", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    id_column = args.id_column
    if id_column is None:
        id_column = "id" if "id" in load_corpus(args.input).column_names else None
    cfg = EncodeConfig(
        model=args.model,
        inputs=args.input,
        text_column=args.text_column,
        id_column=id_column,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        prompt_name=args.prompt_name,
        format=args.format,
        max_seq_length=args.max_seq_length,
    )
    try:
        manifest = encode_corpus(cfg, args.output, args.num_processes)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    logger.info("done: %s", manifest)


if __name__ == "__main__":
    main()
