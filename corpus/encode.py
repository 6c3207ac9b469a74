"""Encode a corpus of JSONL / Parquet files with a SentenceTransformer (NV-Embed or any other) on Ray Data, resumably.

    python -m corpus.encode MODEL --input FILES --output OUT_DIR [--address ray://HEAD:10001] [--num-workers N]
        [--text-column text] [--id-column id] [--rows-per-file 10000] [--batch-size 32] [--prompt-name NAME]

Without `--address` a local Ray instance is started (a laptop); with `--address ray://HEAD:10001` (or a GCS address
`HOST:6379`) the same command runs on a cluster, whose nodes have this package installed and see MODEL, FILES and
OUT_DIR at the same (absolute) paths. One model replica is loaded per worker, an actor of Ray Data's `map_batches`
actor pool: one GPU per worker where the cluster has GPUs (and one worker per GPU by default), else one worker per
node, each with the CPU cores of the smallest node as torch threads.

Output: `OUT_DIR/part-{i:05d}.parquet`, one per `--rows-per-file` rows of one input file, with the columns `id`,
`embedding` (float32, fixed-size list) and `model_fingerprint`, plus `manifest.json` (the settings, the input plan and
the model's fingerprint). The model fingerprint is a SHA-256 of the *content* of every file of the model folder
(weights, configs, tokenizer, remote code), so a retrained model of the same shapes has another one. Each part's rows
are fingerprinted too (a SHA-256 of its (id, text) pairs, in the manifest and in the part file's metadata), so an input
edited in place, even to the same size, is noticed.

Checks: before anything is encoded every input row is read once (Parquet by batches): texts must be strings and ids
non-null, of one type (string or integer) and unique; the error names the first bad row (`file line N`). A rerun on
the same OUT_DIR encodes only the parts that are missing or fail verification (unreadable, another row count, other
rows; such a part is logged and re-encoded), and refuses to resume when the model, the inputs or the settings differ,
naming what differs. Files are written to a temporary name, then renamed, so a killed run leaves no partial part. A
lock (`OUT_DIR/.lock`, an flock held by a Ray actor for the run, released by the OS when the run dies) refuses a
second run on the same folder.

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
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np


logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
FINGERPRINT_KEY = b"nvembed.model_fingerprint"
ROWS_KEY = b"nvembed.rows_sha256"
LOCK = ".lock"
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
    `first_row` is the corpus-wide number of its first row, `sha256` the fingerprint of its (id, text) pairs."""

    index: int
    path: str
    start: int
    end: int
    first_row: int
    byte_start: int = 0
    byte_end: int = 0
    sha256: str = ""

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


def _row_bytes(row_id, text) -> bytes:
    """What a part's fingerprint hashes for one row: its id and text, as canonical JSON."""
    return json.dumps([row_id, text], ensure_ascii=False).encode() + b"\n"


def _iter_parquet(path: str, columns: list[str], start: int = 0, end: int | None = None, batch_rows: int = 4096):
    """(row number, {column: value}) for rows [start, end) of a Parquet file, decoded `batch_rows` at a time (only
    the row groups that hold those rows are read; a row group is never decoded whole)."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path, buffer_size=1 << 20)  # buffered: column chunks are streamed, not read whole
    end = file.metadata.num_rows if end is None else end
    groups, first, row = [], 0, None
    for g in range(file.metadata.num_row_groups):
        rows = file.metadata.row_group(g).num_rows
        if first < end and first + rows > start:
            groups.append(g)
            row = first if row is None else row
        first += rows
    if not groups:
        return
    for batch in file.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns, use_threads=False):
        if row + batch.num_rows > start:
            lo, hi = max(start - row, 0), min(end - row, batch.num_rows)
            values = {c: batch.column(c).slice(lo, hi - lo).to_pylist() for c in columns}
            for k in range(hi - lo):
                yield row + lo + k, {c: values[c][k] for c in columns}
        row += batch.num_rows
        if row >= end:
            return


class _RowChecker:
    """Checks texts (strings) and ids (non-null, one type: string or integer, unique) across the whole corpus and
    names the first bad row; `where` says where a row is (`file line N` or `file row N`)."""

    def __init__(self, text_column: str, id_column: str | None):
        self.text_column, self.id_column = text_column, id_column
        self.first_seen: dict = {}  # id -> where it was first seen
        self.id_type: tuple[type, str] | None = None  # (type, where its first id was)

    def check(self, row_id, text, where: str) -> None:
        if not isinstance(text, str):
            raise ValueError(f"{where}: {self.text_column!r} is {_shown(text)}, not a string")
        if self.id_column is None:
            return
        if row_id is None:
            raise ValueError(f"{where}: the id ({self.id_column!r}) is missing or null; every row needs one")
        kind = str if isinstance(row_id, str) else int if type(row_id) is int else None
        if kind is None:
            raise ValueError(f"{where}: the id {_shown(row_id)} is not a string or an integer")
        if self.id_type is None:
            self.id_type = (kind, where)
        elif kind is not self.id_type[0]:
            raise ValueError(
                f"{where}: the id {row_id!r} is a {kind.__name__}, but the first id ({self.id_type[1]}) is a "
                f"{self.id_type[0].__name__}; ids must all be of one type"
            )
        first = self.first_seen.setdefault(row_id, where)
        if first is not where:
            raise ValueError(f"{where}: the id {row_id!r} is a duplicate of {first}; ids must be unique")


def _shown(value) -> str:
    return "missing" if value is None else f"{type(value).__name__} {value!r:.60}"


def _input_rows(path: str, columns: list[str]):
    """(where, byte offset, row) for every row of an input file: JSONL line by line (blank lines skipped), Parquet
    by batches; `where` names the row in errors (`file line N`, `file row N`)."""
    name = Path(path).name
    if INPUT_KINDS[Path(path).suffix] == "parquet":
        for n, row in _iter_parquet(path, columns):
            yield f"{name} row {n}", 0, row
        return
    offset = 0
    with open(path, "rb") as f:
        for line_number, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    raise ValueError(f"{name} line {line_number}: not valid JSON ({error})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{name} line {line_number}: not a JSON object")
                yield f"{name} line {line_number}", offset, row
            offset += len(line)


def plan_parts(cfg: EncodeConfig) -> list[Part]:
    """Cut every input file into parts of `rows_per_file` rows, reading every row once: the rows are checked
    (`_RowChecker`) and each part's (id, text) pairs fingerprinted; JSONL parts also get their byte range."""
    checker = _RowChecker(cfg.text_column, cfg.id_column)
    parts, first_row = [], 0
    for path in cfg.inputs:
        columns = _columns_of_first_row(path)
        wanted = [c for c in (cfg.text_column, cfg.id_column) if c is not None]
        missing = [c for c in wanted if columns and c not in columns]
        if missing:
            raise ValueError(f"{path} has no column(s) {missing}; its columns are {columns}")
        rows, starts, digests = 0, [], []  # per part: (first row, its byte offset), the hash of its rows
        for where, offset, row in _input_rows(path, wanted):
            if rows % cfg.rows_per_file == 0:
                starts.append((rows, offset))
                digests.append(hashlib.sha256())
            row_id = row.get(cfg.id_column) if cfg.id_column else first_row + rows
            checker.check(row_id, row.get(cfg.text_column), where)
            digests[-1].update(_row_bytes(row_id, row.get(cfg.text_column)))
            rows += 1
        end_byte = Path(path).stat().st_size if INPUT_KINDS[Path(path).suffix] == "jsonl" else 0
        for k, ((start, byte_start), digest) in enumerate(zip(starts, digests)):
            end, byte_end = starts[k + 1] if k + 1 < len(starts) else (rows, end_byte)
            sha256 = digest.hexdigest()
            parts.append(Part(len(parts), path, start, end, first_row + start, byte_start, byte_end, sha256))
        first_row += rows
    return parts


def read_part(part: Part, cfg: EncodeConfig) -> tuple[list, list[str]]:
    """The ids and texts of one part, in file order; refused if they are not the rows the run was planned on."""
    if INPUT_KINDS[Path(part.path).suffix] == "parquet":
        columns = [c for c in (cfg.text_column, cfg.id_column) if c is not None]
        rows = [row for _, row in _iter_parquet(part.path, columns, part.start, part.end)]
    else:
        with open(part.path, "rb") as f:
            f.seek(part.byte_start)
            rows = [json.loads(line) for line in f.read(part.byte_end - part.byte_start).splitlines() if line.strip()]
    texts = [row.get(cfg.text_column) for row in rows]
    ids = [row.get(cfg.id_column) for row in rows] if cfg.id_column else None
    if ids is None:
        ids = list(range(part.first_row, part.first_row + len(texts)))
    digest = hashlib.sha256()
    for row_id, text in zip(ids, texts):
        digest.update(_row_bytes(row_id, text))
    if len(texts) != part.end - part.start or digest.hexdigest() != part.sha256:
        raise ValueError(
            f"{part.path} changed after the run was planned: rows {part.start}-{part.end} now read "
            f"{len(texts)} rows with fingerprint {digest.hexdigest()[:12]}, planned {part.sha256[:12]}; rerun"
        )
    return ids, texts


def write_part(path: Path, ids: list, embeddings: np.ndarray, fingerprint: str, rows_sha256: str = "") -> None:
    """Write to a temporary name, then rename: a killed worker leaves a `.tmp-*` file, never a partial part. The
    metadata holds the model's fingerprint and the fingerprint of the rows embedded; pages carry CRC checksums."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    B, d = embeddings.shape
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), d)  # (B, d) -> B lists of d
    table = pa.table({"id": pa.array(ids), "embedding": vectors, "model_fingerprint": pa.array([fingerprint] * B)})
    table = table.replace_schema_metadata({FINGERPRINT_KEY: fingerprint.encode(), ROWS_KEY: rows_sha256.encode()})
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    pq.write_table(table, tmp, write_page_checksum=True)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build_manifest(cfg: EncodeConfig, fingerprint: dict, parts: list[Part]) -> dict:
    inputs = {}
    for path in cfg.inputs:
        of_file = [p for p in parts if p.path == path]
        digest = hashlib.sha256("".join(p.sha256 for p in of_file).encode()).hexdigest()
        inputs[path] = {"rows": sum(p.end - p.start for p in of_file), "sha256": digest}
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


def verify_part(path: Path, part: Part, model_sha256: str, full: bool = False) -> str | None:
    """Why a finished part file cannot be kept (None if it can): unreadable, another row count, or other rows.
    `full` also reads every page against its checksum; by default only the footer (a truncated file has none).
    A part made by another model raises: its vectors must never sit beside this run's."""
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path, page_checksum_verification=full)
        metadata = file.schema_arrow.metadata or {}
        if full:
            file.read()
    except Exception as error:  # noqa: BLE001 - any read failure means re-encode; the reason is logged
        return f"unreadable ({type(error).__name__}: {str(error)[:200]})"
    written = metadata.get(FINGERPRINT_KEY, b"").decode()
    if written != model_sha256:
        raise ValueError(
            f"{path} was written by the model with fingerprint {written[:12] or 'none'}, not this model's "
            f"{model_sha256[:12]}; delete it or choose a new --output"
        )
    if file.metadata.num_rows != part.end - part.start:
        return f"{file.metadata.num_rows} rows, the part has {part.end - part.start}"
    rows = metadata.get(ROWS_KEY, b"").decode()
    if rows != part.sha256:
        return f"rows fingerprint {rows[:12] or 'none'} is not the part's {part.sha256[:12]}"
    return None


def prepare(cfg: EncodeConfig, output: str, full_check: bool = False) -> tuple[EncodeConfig, dict, list[Part]]:
    """Fingerprint the model, plan the parts, check or write the manifest, verify the finished parts; return the
    settings (`id_column` resolved), the manifest and the parts still to encode.
    Runs as a Ray task, so on a cluster it reads the files where the workers will."""
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
        foreign = [p.name for p in out_dir.iterdir() if not p.name.startswith(TMP_PREFIX) and p.name != LOCK]
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
        problem = verify_part(path, part, fingerprint["sha256"], full=full_check)
        if problem is not None:
            logger.warning("%s: %s; encoding it again", path, problem)
            path.unlink()
            pending.append(part)
    return cfg, manifest, pending


class OutputLock:
    """A Ray actor holding an flock on `OUT_DIR/.lock` for one run; the OS releases it when the actor dies, so a
    killed run leaves no stale lock. It runs where the workers run, so the lock is taken where the output is."""

    def __init__(self, out_dir: str):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self.file = open(Path(out_dir) / LOCK, "a+")  # noqa: SIM115 - held open for the actor's life

    def acquire(self, owner: str, wait_s: float) -> str | None:
        """Take the lock, waiting up to `wait_s` (a killed run's actor takes a moment to die); None, or its holder."""
        import fcntl

        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.file.seek(0)
                    return self.file.read().strip() or "an unknown process"
                time.sleep(0.1)
        self.file.seek(0)
        self.file.truncate()
        self.file.write(owner + "\n")
        self.file.flush()
        return None


def worker_layout(nodes: list[dict], num_workers: int | None, cpus_per_worker: int | None) -> tuple[int, int, int]:
    """(workers, CPUs per worker, GPUs per worker) for the alive nodes of a cluster (`ray.nodes()` entries).

    With GPUs: one worker per GPU, 1 CPU each. Without: one worker per node, each with the CPUs of the smallest
    node (a worker must fit on one node; asking for the whole cluster's CPUs would wait for a node that does not
    exist); more workers than nodes share the nodes' CPUs.
    """
    resources = [n["Resources"] for n in nodes if n.get("Alive", True) and n["Resources"].get("CPU", 0) >= 1]
    if not resources:
        raise ValueError("the Ray cluster has no alive node with a CPU")
    gpus = int(sum(r.get("GPU", 0) for r in resources))
    if gpus:
        return num_workers or gpus, cpus_per_worker or 1, 1
    num_workers = num_workers or len(resources)
    per_node = -(-num_workers // len(resources))  # workers on the busiest node
    smallest = int(min(r["CPU"] for r in resources))
    return num_workers, cpus_per_worker or max(1, smallest // per_node), 0


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
            write_part(self.out_dir / part.file_name, ids, embeddings, self.fingerprint, part.sha256)
            done["index"].append(part.index)
            done["rows"].append(len(texts))
            done["seconds"].append(time.perf_counter() - start)
            done["finished_at"].append(time.time())
            done["worker"].append(os.getpid())
        return {k: np.asarray(v) for k, v in done.items()}


def encode_corpus(
    cfg: EncodeConfig,
    output: str | Path,
    num_workers: int | None = None,
    cpus_per_worker: int | None = None,
    full_check: bool = False,
    lock_wait_s: float = 10.0,
) -> dict:
    """Encode every part not yet under `output` on the connected Ray cluster (a local one is started if none is).

    Args:
        cfg: what to encode and how.
        output: the output folder (created; a rerun resumes in it).
        num_workers: model replicas, all loaded before the first part is handed out (the run waits up to 30 min for
            the cluster to fit them); default: one per GPU of the cluster, else one per node (`worker_layout`).
        cpus_per_worker: CPUs (torch threads) per replica; default: 1 with GPUs, else the smallest node's CPUs
            (divided among the workers that share a node).
        full_check: verify finished parts by reading every page against its checksum, not only the footer.
        lock_wait_s: how long to wait for another run's lock on `output` before refusing.

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

    if not ray.is_initialized():
        ray.init()
    # Absolute paths: Ray workers do not start in this directory (on a cluster, the nodes must see these paths).
    cfg = replace(cfg, model=os.path.abspath(cfg.model), inputs=[os.path.abspath(p) for p in cfg.inputs])
    output = os.path.abspath(output)
    lock = ray.remote(OutputLock).options(num_cpus=0).remote(output)
    try:
        owner = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        holder = ray.get(lock.acquire.remote(owner, lock_wait_s))
        if holder is not None:
            raise ValueError(f"{output} is being written by another run ({holder}); wait for it or choose a new "
                             "--output")  # fmt: skip
        return _encode_locked(cfg, output, num_workers, cpus_per_worker, full_check)
    finally:
        ray.kill(lock)  # the flock goes with the actor's process


def _encode_locked(cfg, output, num_workers, cpus_per_worker, full_check) -> dict:
    import ray
    from ray.exceptions import RayTaskError

    try:
        cfg, manifest, pending = ray.get(ray.remote(prepare).options(num_cpus=0).remote(cfg, output, full_check))
    except RayTaskError as error:  # show the ValueError itself, not the remote traceback around it
        raise error.cause from None
    result = {"manifest": str(Path(output) / MANIFEST), "encoded": [], "rows": 0, "seconds": 0.0}
    result.update(part_seconds={}, finished_at={}, workers=set())
    logger.info("%d of %d parts to encode", len(pending), len(manifest["parts"]))
    if not pending:
        return result

    num_workers, cpus_per_worker, gpus = worker_layout(ray.nodes(), num_workers, cpus_per_worker)
    num_workers = min(num_workers, len(pending))
    logger.info("%d worker(s), %d CPU(s) and %d GPU(s) each", num_workers, cpus_per_worker, gpus)
    # All replicas load the model before the first part is handed out; else the first one ready may take them all.
    ray.data.DataContext.get_current().wait_for_min_actors_s = 1800
    start = time.perf_counter()
    parts = ray.data.from_items([asdict(p) for p in pending], override_num_blocks=len(pending))
    done = parts.map_batches(
        PartEncoder,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=cpus_per_worker,
        num_gpus=gpus,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a SentenceTransformer folder (an NV-Embed export, or any other)")
    parser.add_argument("--input", nargs="+", required=True, help="JSONL and/or Parquet files")
    parser.add_argument("--output", required=True, help="the output folder (created; reruns resume in it)")
    parser.add_argument("--address", default=None, help="ray://HEAD:10001 or HOST:6379; default: local Ray")
    parser.add_argument(
        "--num-workers", type=int, default=None, help="model replicas; default: one per GPU, else one per node"
    )
    parser.add_argument("--cpus-per-worker", type=int, default=None)
    parser.add_argument("--text-column", default="text")
    parser.add_argument(
        "--id-column", default="auto", help="`auto`: `id` if the data has one, else row numbers (`none`)"
    )
    parser.add_argument("--rows-per-file", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--prompt-name", default=None, help="e.g. `query`; passages usually get none")
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--full-check", action="store_true", help="on resume, read all of each finished part")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
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
        result = encode_corpus(cfg, args.output, args.num_workers, args.cpus_per_worker, full_check=args.full_check)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    logger.info("done: %d rows in %d parts; manifest %s", result["rows"], len(result["encoded"]), result["manifest"])


if __name__ == "__main__":
    main()
