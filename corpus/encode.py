"""Encode a corpus of JSONL / Parquet files with a SentenceTransformer (NV-Embed or any other) on Ray Data, resumably.

    python -m corpus.encode MODEL --input FILES --output OUT_DIR [--address ray://HEAD:10001] [--num-workers N]
        [--text-column text] [--id-column id] [--rows-per-file 10000] [--batch-size 32] [--prompt-name NAME]

Without `--address` a local Ray instance is started (a laptop); with `--address ray://HEAD:10001` (or a GCS address
`HOST:6379`) the same command runs on a cluster, whose nodes have this package installed and see MODEL, FILES and
OUT_DIR at the same (absolute) paths. One model replica is loaded per worker, an actor of Ray Data's `map_batches`
actor pool: one GPU per worker where the cluster has GPUs (and one worker per GPU by default), else one worker with
all CPU cores as torch threads.

Output: `OUT_DIR/part-{i:05d}.parquet`, one per `--rows-per-file` rows of one input file, with the columns `id`,
`embedding` (float32, fixed-size list) and `model_fingerprint`, plus `manifest.json` (the settings, the input plan and
the model's fingerprint). The fingerprint is a SHA-256 of the *content* of every file of the model folder (weights,
configs, tokenizer, remote code), so a retrained model of the same shapes has another one. A rerun on the same OUT_DIR
encodes only the parts whose file is missing (files are written to a temporary name, then renamed, so a killed run
leaves no partial part), and refuses to resume when the model, the inputs or the settings differ, naming what differs.

What Ray does not do, and so stays here: Ray Data's `write_parquet` names its files by block and uuid, which differ
from run to run, so a rerun could not tell which rows are done. So each Ray Data row is one output part (a row range of
an input file), planned here before the run; an actor reads, embeds and writes its part whole and atomically.

Example:
    python -m corpus.encode ./nvembed --input data/passages.jsonl --output runs/passages-emb --batch-size 32
"""

import argparse
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np


logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
FINGERPRINT_KEY = b"nvembed.model_fingerprint"
INPUT_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class EncodeConfig:
    """Everything that decides the vectors written; a resumed run must have the same.

    Args:
        model (`str`): the SentenceTransformer folder.
        inputs (`list[str]`): JSONL (one object per line) or Parquet files.
        text_column (`str`, *optional*, defaults to `"text"`): the column to embed.
        id_column (`str`, *optional*): the id column; None numbers the rows across all inputs (0, 1, ...), and
            `"auto"` takes `id` if the first input has that column, else numbers the rows.
        rows_per_file (`int`, *optional*, defaults to 10000): rows per output part, the unit a rerun skips.
        batch_size (`int`, *optional*, defaults to 32): texts per forward pass.
        prompt_name (`str`, *optional*): a prompt of the model's `prompts` (e.g. `"query"`); passages get none.
        max_seq_length (`int`, *optional*): truncation length (None: the model's own).
    """

    model: str
    inputs: list[str]
    text_column: str = "text"
    id_column: str | None = None
    rows_per_file: int = 10000
    batch_size: int = 32
    prompt_name: str | None = None
    max_seq_length: int | None = None

    def __post_init__(self):
        if self.rows_per_file < 1 or self.batch_size < 1:
            raise ValueError(f"rows_per_file and batch_size must be >= 1, got {self.rows_per_file}, {self.batch_size}")
        if not self.inputs:
            raise ValueError("no input files given")
        bad = [p for p in self.inputs if Path(p).suffix not in INPUT_KINDS]
        if bad:
            raise ValueError(f"inputs must end in one of {sorted(INPUT_KINDS)}; got {bad}")


@dataclass
class Part:
    """Rows [start, end) of one input file (bytes [byte_start, byte_end) for JSONL), written to `part-{index}`;
    `first_row` is the corpus-wide number of its first row."""

    index: int
    path: str
    start: int
    end: int
    first_row: int
    byte_start: int = 0
    byte_end: int = 0

    @property
    def file_name(self) -> str:
        return f"part-{self.index:05d}.parquet"


def model_fingerprint(folder: str | Path) -> dict:
    """SHA-256 of each file of the model folder (README and hidden files aside) and one digest over them all."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if name.startswith(".") or "/." in name or path.suffix == ".md":
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 23):
                digest.update(chunk)
        files[name] = digest.hexdigest()
    if not any(name.endswith(".safetensors") for name in files):
        raise ValueError(f"{folder} has no .safetensors weights; the fingerprint hashes those (convert or re-save)")
    overall = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"sha256": overall, "files": files}


def fingerprint_differences(old: dict, new: dict) -> list[str]:
    """Which model files were added, removed or changed between two fingerprints."""
    old_files, new_files = old.get("files", {}), new.get("files", {})
    lines = []
    for name in sorted(set(old_files) | set(new_files)):
        a, b = old_files.get(name), new_files.get(name)
        if a != b:
            lines.append(f"{name}: {(a or 'absent')[:12]} -> {(b or 'absent')[:12]}")
    return lines


def _columns_of_first_row(path: str) -> list[str]:
    if INPUT_KINDS[Path(path).suffix] == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                return list(json.loads(line))
    return []


def plan_parts(cfg: EncodeConfig) -> list[Part]:
    """Cut every input file into parts of `rows_per_file` rows; JSONL parts also get their byte range."""
    import pyarrow.parquet as pq

    parts, first_row = [], 0
    for path in cfg.inputs:
        columns = _columns_of_first_row(path)
        wanted = [c for c in (cfg.text_column, cfg.id_column) if c is not None]
        missing = [c for c in wanted if columns and c not in columns]
        if missing:
            raise ValueError(f"{path} has no column(s) {missing}; its columns are {columns}")
        if INPUT_KINDS[Path(path).suffix] == "parquet":
            rows = pq.ParquetFile(path).metadata.num_rows
            bounds = [(s, min(s + cfg.rows_per_file, rows), 0, 0) for s in range(0, rows, cfg.rows_per_file)]
        else:
            bounds, offsets, offset = [], [], 0
            with open(path, "rb") as f:
                for line in f:
                    if line.strip():
                        offsets.append(offset)
                    offset += len(line)
            rows = len(offsets)
            for s in range(0, rows, cfg.rows_per_file):
                e = min(s + cfg.rows_per_file, rows)
                bounds.append((s, e, offsets[s], offsets[e] if e < rows else offset))
        for start, end, byte_start, byte_end in bounds:
            parts.append(Part(len(parts), path, start, end, first_row + start, byte_start, byte_end))
        first_row += rows
    return parts


def read_part(part: Part, cfg: EncodeConfig) -> tuple[list, list[str]]:
    """The ids and texts of one part, in file order."""
    if INPUT_KINDS[Path(part.path).suffix] == "parquet":
        import pyarrow.parquet as pq

        columns = [c for c in (cfg.text_column, cfg.id_column) if c is not None]
        file = pq.ParquetFile(part.path)
        groups, first, skip = [], 0, 0
        for g in range(file.metadata.num_row_groups):  # read only the row groups that hold the part's rows
            rows = file.metadata.row_group(g).num_rows
            if first < part.end and first + rows > part.start:
                skip = skip if groups else part.start - first
                groups.append(g)
            first += rows
        table = file.read_row_groups(groups, columns=columns).slice(skip, part.end - part.start)
        texts = table[cfg.text_column].to_pylist()
        ids = table[cfg.id_column].to_pylist() if cfg.id_column else None
    else:
        with open(part.path, "rb") as f:
            f.seek(part.byte_start)
            rows = [json.loads(line) for line in f.read(part.byte_end - part.byte_start).splitlines() if line.strip()]
        texts = [row.get(cfg.text_column) for row in rows]
        ids = [row.get(cfg.id_column) for row in rows] if cfg.id_column else None
    if ids is None:
        ids = list(range(part.first_row, part.first_row + len(texts)))
    bad = [part.start + k for k, t in enumerate(texts) if not isinstance(t, str)]
    if bad or len(texts) != part.end - part.start:
        raise ValueError(f"{part.path}: rows {bad[:5]} have no string {cfg.text_column!r} (or the file changed)")
    return ids, texts


def write_part(path: Path, ids: list, embeddings: np.ndarray, fingerprint: str) -> None:
    """Write to a temporary name, then rename: a killed worker leaves a `.tmp-*` file, never a partial part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    B, d = embeddings.shape
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), d)  # (B, d) -> B lists of d
    table = pa.table({"id": pa.array(ids), "embedding": vectors, "model_fingerprint": pa.array([fingerprint] * B)})
    table = table.replace_schema_metadata({FINGERPRINT_KEY: fingerprint.encode()})
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build_manifest(cfg: EncodeConfig, fingerprint: dict, parts: list[Part]) -> dict:
    inputs = {p: {"bytes": Path(p).stat().st_size} for p in cfg.inputs}
    return {
        "config": asdict(cfg),
        "model_fingerprint": fingerprint,
        "inputs": inputs,
        "num_rows": sum(p.end - p.start for p in parts),
        "parts": [asdict(p) for p in parts],
    }


def check_manifest(old: dict, new: dict, out_dir: Path) -> None:
    """Refuse to resume into `out_dir` unless the model, inputs, settings and plan are the ones it was begun with."""
    differ = []
    if old.get("model_fingerprint", {}).get("sha256") != new["model_fingerprint"]["sha256"]:
        changed = fingerprint_differences(old.get("model_fingerprint", {}), new["model_fingerprint"])
        differ.append(f"model fingerprint {new['model_fingerprint']['sha256'][:12]} is not the one the finished "
                      f"parts were made with ({old.get('model_fingerprint', {}).get('sha256', '?')[:12]}); "
                      f"changed model files: {', '.join(changed)}")  # fmt: skip
    for key in ("config", "inputs"):
        a, b = old.get(key, {}), new[key]
        differ += [f"{key}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if not differ and (old.get("num_rows"), old.get("parts")) != (new["num_rows"], new["parts"]):
        differ.append(f"input plan: {old.get('num_rows')} -> {new['num_rows']} rows")
    if differ:
        raise ValueError(
            f"{out_dir} holds parts of another run, so they cannot be mixed with this one. Differences "
            f"(old -> new): {'; '.join(differ)}. Rerun with the original model and settings, or choose a new --output."
        )


def prepare(cfg: EncodeConfig, output: str) -> tuple[EncodeConfig, dict, list[Part]]:
    """Fingerprint the model, plan the parts, check or write the manifest; return the settings (`id_column`
    resolved), the manifest and the parts still to encode.
    Runs as a Ray task, so on a cluster it reads the files where the workers will."""
    import pyarrow.parquet as pq

    model = Path(cfg.model)
    if not (model / "modules.json").is_file():
        raise ValueError(f"{model} is not a SentenceTransformer folder (no modules.json)")
    missing = [p for p in cfg.inputs if not Path(p).is_file()]
    if missing:
        raise ValueError(f"input file(s) not found: {missing}")
    prompts_file = model / "config_sentence_transformers.json"
    prompts = json.loads(prompts_file.read_text()).get("prompts", {}) if prompts_file.is_file() else {}
    if cfg.prompt_name is not None and cfg.prompt_name not in prompts:
        raise ValueError(f"the model has no prompt {cfg.prompt_name!r}; its prompts are {sorted(prompts)}")

    if cfg.id_column == "auto":
        cfg = replace(cfg, id_column="id" if "id" in _columns_of_first_row(cfg.inputs[0]) else None)
    fingerprint = model_fingerprint(model)
    parts = plan_parts(cfg)
    manifest = build_manifest(cfg, fingerprint, parts)
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST
    if manifest_path.is_file():
        check_manifest(json.loads(manifest_path.read_text()), manifest, out_dir)
    else:
        foreign = [p.name for p in out_dir.iterdir() if not p.name.startswith(TMP_PREFIX)]
        if foreign:
            raise ValueError(f"{out_dir} is not empty and has no {MANIFEST} ({foreign[:5]}); choose a new --output")
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for stale in out_dir.glob(f"{TMP_PREFIX}*"):  # left by a killed run
        stale.unlink()

    pending = []
    for part in parts:
        path = out_dir / part.file_name
        if not path.is_file():
            pending.append(part)
            continue
        # A finished part whose vectors came from another model must never sit beside this run's.
        written = (pq.read_schema(path).metadata or {}).get(FINGERPRINT_KEY, b"").decode()
        if written != fingerprint["sha256"]:
            raise ValueError(
                f"{path} was written by the model with fingerprint {written[:12] or 'none'}, not this model's "
                f"{fingerprint['sha256'][:12]}; delete it or choose a new --output"
            )
    return cfg, manifest, pending


class PartEncoder:
    """One model replica (a Ray actor of the `map_batches` pool): reads, embeds and writes whole parts."""

    def __init__(self, cfg: EncodeConfig, fingerprint: str, output: str, threads: int):
        import torch
        from sentence_transformers import SentenceTransformer

        found = model_fingerprint(cfg.model)["sha256"]
        if found != fingerprint:  # the folder was replaced after the run was planned
            raise ValueError(f"{cfg.model} changed during the run: fingerprint {found[:12]} != {fingerprint[:12]}")
        device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
        if device == "cpu":
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(cfg.model, device=device, trust_remote_code=True)
        if cfg.max_seq_length is not None:
            self.model.max_seq_length = cfg.max_seq_length
        self.cfg, self.fingerprint, self.out_dir = cfg, fingerprint, Path(output)

    def __call__(self, batch: dict) -> dict:
        fields = list(Part.__dataclass_fields__)
        done = {"index": [], "rows": [], "seconds": [], "finished_at": [], "worker": []}
        for values in zip(*(batch[f] for f in fields)):
            part = Part(**{f: v.item() if hasattr(v, "item") else v for f, v in zip(fields, values)})
            start = time.perf_counter()
            ids, texts = read_part(part, self.cfg)
            embeddings = self.model.encode(
                texts, batch_size=self.cfg.batch_size, prompt_name=self.cfg.prompt_name, show_progress_bar=False
            ).astype(np.float32)  # (rows, d)
            write_part(self.out_dir / part.file_name, ids, embeddings, self.fingerprint)
            done["index"].append(part.index)
            done["rows"].append(len(texts))
            done["seconds"].append(time.perf_counter() - start)
            done["finished_at"].append(time.time())
            done["worker"].append(os.getpid())
        return {k: np.asarray(v) for k, v in done.items()}


def encode_corpus(
    cfg: EncodeConfig, output: str | Path, num_workers: int | None = None, cpus_per_worker: int | None = None
) -> dict:
    """Encode every part not yet under `output` on the connected Ray cluster (a local one is started if none is).

    Args:
        cfg: what to encode and how.
        output: the output folder (created; a rerun resumes in it).
        num_workers: model replicas, all loaded before the first part is handed out (the run waits up to 30 min for
            the cluster to fit them); default: one per GPU of the cluster, else 1.
        cpus_per_worker: CPUs (torch threads) per replica; default: 1 with GPUs, else the cluster's CPUs / workers.

    Returns:
        `{"manifest": path, "encoded": [part indices encoded by this run], "rows": rows encoded, "seconds": wall
        time of the Ray Data run, "part_seconds": {index: seconds}, "finished_at": {index: unix time}, "workers":
        {process ids of the replicas that encoded them}}`.

    Example:
        >>> cfg = EncodeConfig(model="./nvembed", inputs=["passages.jsonl"], id_column="id")  # doctest: +SKIP
        >>> encode_corpus(cfg, "runs/passages-emb", num_workers=2)["encoded"]  # doctest: +SKIP
        [0, 1, 2]
    """
    import ray
    from ray.exceptions import RayTaskError

    if not ray.is_initialized():
        ray.init()
    # Absolute paths: Ray workers do not start in this directory (on a cluster, the nodes must see these paths).
    cfg = replace(cfg, model=os.path.abspath(cfg.model), inputs=[os.path.abspath(p) for p in cfg.inputs])
    output = os.path.abspath(output)
    try:
        cfg, manifest, pending = ray.get(ray.remote(prepare).options(num_cpus=0).remote(cfg, str(output)))
    except RayTaskError as error:  # show the ValueError itself, not the remote traceback around it
        raise error.cause from None
    result = {"manifest": str(Path(output) / MANIFEST), "encoded": [], "rows": 0, "seconds": 0.0}
    result.update(part_seconds={}, finished_at={}, workers=set())
    logger.info("%d of %d parts to encode", len(pending), len(manifest["parts"]))
    if not pending:
        return result

    gpus = int(ray.cluster_resources().get("GPU", 0))
    num_workers = min(num_workers or max(gpus, 1), len(pending))
    if cpus_per_worker is None:
        cpus_per_worker = 1 if gpus else max(1, int(ray.cluster_resources().get("CPU", 1)) // num_workers)
    # All replicas load the model before the first part is handed out; else the first one ready may take them all.
    ray.data.DataContext.get_current().wait_for_min_actors_s = 1800
    start = time.perf_counter()
    parts = ray.data.from_items([asdict(p) for p in pending], override_num_blocks=len(pending))
    done = parts.map_batches(
        PartEncoder,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=cpus_per_worker,
        num_gpus=1 if gpus else 0,
        fn_constructor_kwargs=dict(
            cfg=cfg, fingerprint=manifest["model_fingerprint"]["sha256"], output=str(output), threads=cpus_per_worker
        ),
    )
    for row in done.iter_rows():
        result["encoded"].append(int(row["index"]))
        result["rows"] += int(row["rows"])
        result["part_seconds"][int(row["index"])] = float(row["seconds"])
        result["finished_at"][int(row["index"])] = float(row["finished_at"])
        result["workers"].add(int(row["worker"]))
        logger.info("part %d done (%d/%d this run)", row["index"], len(result["encoded"]), len(pending))
    result["seconds"] = time.perf_counter() - start
    result["encoded"].sort()
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a SentenceTransformer folder (an NV-Embed export, or any other)")
    parser.add_argument("--input", nargs="+", required=True, help="JSONL and/or Parquet files")
    parser.add_argument("--output", required=True, help="the output folder (created; reruns resume in it)")
    parser.add_argument("--address", default=None, help="ray://HEAD:10001 or HOST:6379; default: local Ray")
    parser.add_argument("--num-workers", type=int, default=None, help="model replicas; default: one per GPU, else 1")
    parser.add_argument("--cpus-per-worker", type=int, default=None)
    parser.add_argument("--text-column", default="text")
    parser.add_argument(
        "--id-column", default="auto", help="`auto`: `id` if the data has one, else row numbers (`none`)"
    )
    parser.add_argument("--rows-per-file", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--prompt-name", default=None, help="e.g. `query`; passages usually get none")
    parser.add_argument("--max-seq-length", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import ray

    try:
        cfg = EncodeConfig(
            model=args.model,
            inputs=args.input,
            text_column=args.text_column,
            id_column=None if args.id_column == "none" else args.id_column,
            rows_per_file=args.rows_per_file,
            batch_size=args.batch_size,
            prompt_name=args.prompt_name,
            max_seq_length=args.max_seq_length,
        )
        ray.init(address=args.address)
        result = encode_corpus(cfg, args.output, args.num_workers, args.cpus_per_worker)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    logger.info("done: %d rows in %d parts; manifest %s", result["rows"], len(result["encoded"]), result["manifest"])


if __name__ == "__main__":
    main()
