"""Corpus encoding (`python -m corpus.encode`) on the tiny NV-Embed folder: a SIGKILLed run resumes to the same bytes,
ids line up with rows, a different configuration is refused (seconds each, plus worker start-up)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corpus.encode import EncodeConfig, encode_corpus


ROOT = Path(__file__).resolve().parents[1]
WORDS = "gzip compresses files with the deflate algorithm network time protocol daemon keeps clocks in sync".split()
NUM_ROWS, SHARD_SIZE = 240, 3  # 80 shards: a kill after the first one lands mid-run


def corpus_rows(n: int) -> list[dict]:
    return [{"id": f"doc-{i}", "text": f"{i} " + " ".join(WORDS[: 1 + (i * 7) % len(WORDS)])} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(model: Path, corpus: Path, **overrides) -> EncodeConfig:
    values = dict(model=str(model), inputs=[str(corpus)], id_column="id", shard_size=SHARD_SIZE, batch_size=4)
    return EncodeConfig(**{**values, **overrides})


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "passages.jsonl", corpus_rows(NUM_ROWS))


@pytest.fixture(scope="module")
def straight_run(tiny_nvembed_folder, corpus_file, tmp_path_factory) -> Path:
    """One uninterrupted run, the reference for the other tests."""
    out = tmp_path_factory.mktemp("straight")
    encode_corpus(config(tiny_nvembed_folder, corpus_file), out, num_processes=1)
    return out


def test_killed_run_resumes_to_identical_files(tiny_nvembed_folder, corpus_file, straight_run, tmp_path):
    out = tmp_path / "killed"
    command = [
        sys.executable, "-m", "corpus.encode", str(tiny_nvembed_folder), "--input", str(corpus_file), "--output",
        str(out), "--shard-size", str(SHARD_SIZE), "--batch-size", "4", "--num-processes", "1", "--id-column", "id",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # Own session: SIGKILL reaches the parent and its worker at once, as an OOM kill or a lost node would.
    proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(out.glob("embeddings-*.npy")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"encoder ended or stalled before its first shard: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = len(list(out.glob("embeddings-*.npy")))
    assert 0 < done < NUM_ROWS // SHARD_SIZE, done
    # A kill between a shard's two renames leaves its ids file alone, and a kill mid-write a temporary file.
    pending = next(i for i in range(NUM_ROWS // SHARD_SIZE) if not (out / f"embeddings-{i:05d}.npy").exists())
    (out / f"ids-{pending:05d}.npy").write_bytes(b"half-written")
    (out / f".tmp-embeddings-{pending:05d}.npy.12345").write_bytes(b"partial")

    encode_corpus(config(tiny_nvembed_folder, corpus_file), out, num_processes=1)
    resumed, reference = files(out), files(straight_run)
    assert list(resumed) == list(reference)  # same names, no temporary files left
    assert [name for name in resumed if resumed[name] != reference[name]] == []


def test_ids_line_up_with_rows(tiny_nvembed_folder, straight_run):
    from sentence_transformers import SentenceTransformer

    manifest = json.loads((straight_run / "manifest.json").read_text())
    shards = manifest["shards"]
    expected_ranges = [(i, min(i + SHARD_SIZE, NUM_ROWS)) for i in range(0, NUM_ROWS, SHARD_SIZE)]
    assert [(s["start"], s["end"]) for s in shards] == expected_ranges
    ids = np.concatenate([np.load(straight_run / f"ids-{s['index']:05d}.npy") for s in shards])
    embeddings = np.concatenate([np.load(straight_run / f"embeddings-{s['index']:05d}.npy") for s in shards])
    rows = corpus_rows(NUM_ROWS)
    assert ids.tolist() == [r["id"] for r in rows]
    assert embeddings.dtype == np.float32 and embeddings.shape[0] == NUM_ROWS
    # Length-sorted batching inside a shard must not shuffle rows: each row is its own text's embedding.
    model = SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")
    picked = [0, 1, 2, 100, 101, NUM_ROWS - 1]
    alone = np.stack([model.encode([rows[i]["text"]], batch_size=1)[0] for i in picked])
    np.testing.assert_allclose(embeddings[picked], alone, atol=1e-4)


def test_manifest_mismatch_is_refused(tiny_nvembed_folder, corpus_file, straight_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(straight_run, copy)
    before = files(copy)
    with pytest.raises(ValueError, match=r"different configuration.*shard_size: 3 -> 4"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file, shard_size=4), copy, num_processes=1)
    with pytest.raises(ValueError, match=r"prompt_name: None -> 'query'"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file, prompt_name="query"), copy, num_processes=1)
    grown = write_jsonl(tmp_path / "passages.jsonl", corpus_rows(NUM_ROWS + 1))
    with pytest.raises(ValueError, match="num_rows: 240 -> 241"):
        encode_corpus(config(tiny_nvembed_folder, grown), copy, num_processes=1)
    assert files(copy) == before  # refused before touching anything
    (copy / "manifest.json").unlink()
    with pytest.raises(ValueError, match="not empty and has no manifest.json"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file), copy, num_processes=1)
    with pytest.raises(ValueError, match="no prompt 'nope'"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file, prompt_name="nope"), tmp_path / "new", num_processes=1)
    # The finished run itself is accepted and has nothing left to do.
    encode_corpus(config(tiny_nvembed_folder, corpus_file), straight_run, num_processes=1)


def test_saved_dataset_to_parquet_with_prompt(tiny_nvembed_folder, tmp_path):
    import pyarrow.parquet as pq
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    rows = [{"pid": 1000 + i, "body": r["text"]} for i, r in enumerate(corpus_rows(10))]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    cfg = EncodeConfig(
        model=str(tiny_nvembed_folder), inputs=[str(tmp_path / "saved")], text_column="body", id_column="pid",
        shard_size=4, batch_size=3, prompt_name="query", format="parquet",
    )  # fmt: skip
    encode_corpus(cfg, tmp_path / "out", num_processes=1)
    tables = [pq.read_table(tmp_path / "out" / f"shard-{i:05d}.parquet") for i in range(3)]
    assert [t.num_rows for t in tables] == [4, 4, 2]
    assert sum((t["id"].to_pylist() for t in tables), []) == [r["pid"] for r in rows]
    embeddings = np.concatenate([np.stack(t["embedding"].to_numpy(zero_copy_only=False)) for t in tables])
    model = SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")
    expected = model.encode([r["body"] for r in rows], prompt_name="query", batch_size=3)
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)
