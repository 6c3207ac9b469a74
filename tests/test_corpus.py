"""Corpus encoding on Ray Data (`python -m corpus.encode`) with the tiny NV-Embed folder on a local 2-CPU Ray: two
replicas give the vectors of one, a killed run resumes by encoding only the missing parts, and a run never resumes
with another model (a few seconds each, plus Ray and actor start-up)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from corpus.encode import EncodeConfig, encode_corpus, write_part


ROOT = Path(__file__).resolve().parents[1]
WORDS = "gzip compresses files with the deflate algorithm network time protocol daemon keeps clocks in sync".split()
NUM_ROWS, ROWS_PER_FILE = 60, 6  # 10 parts


def corpus_rows(n: int) -> list[dict]:
    return [{"id": f"doc-{i}", "text": f"{i} " + " ".join(WORDS[: 1 + (i * 7) % len(WORDS)])} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(model: Path, corpus: Path, **overrides) -> EncodeConfig:
    values = dict(model=str(model), inputs=[str(corpus)], id_column="id", rows_per_file=ROWS_PER_FILE, batch_size=4)
    return EncodeConfig(**{**values, **overrides})


def read_output(folder: Path) -> tuple[list, np.ndarray, set]:
    table = pq.read_table(sorted(folder.glob("part-*.parquet")))
    embeddings = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    return table["id"].to_pylist(), embeddings, set(table["model_fingerprint"].to_pylist())


def stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*.parquet")}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "passages.jsonl", corpus_rows(NUM_ROWS))


@pytest.fixture(scope="module")
def one_worker_run(tiny_nvembed_folder, corpus_file, tmp_path_factory) -> Path:
    """One uninterrupted run with a single replica, the reference for the other tests."""
    out = tmp_path_factory.mktemp("one-worker")
    result = encode_corpus(config(tiny_nvembed_folder, corpus_file), out, num_workers=1, cpus_per_worker=1)
    assert result["encoded"] == list(range(NUM_ROWS // ROWS_PER_FILE)) and len(result["workers"]) == 1
    return out


def test_two_workers_give_the_vectors_of_one(tiny_nvembed_folder, corpus_file, one_worker_run, tmp_path):
    from sentence_transformers import SentenceTransformer

    result = encode_corpus(config(tiny_nvembed_folder, corpus_file), tmp_path, num_workers=2, cpus_per_worker=1)
    assert len(result["workers"]) == 2  # two replicas really shared the parts
    ids, vectors, fingerprints = read_output(tmp_path)
    ids_1, vectors_1, fingerprints_1 = read_output(one_worker_run)
    rows = corpus_rows(NUM_ROWS)
    assert ids == ids_1 == [r["id"] for r in rows]
    np.testing.assert_array_equal(vectors, vectors_1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert fingerprints == fingerprints_1 == {manifest["model_fingerprint"]["sha256"]}
    model = SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(vectors, model.encode([r["text"] for r in rows], batch_size=4), atol=1e-5)


def test_killed_run_resumes_by_encoding_only_the_missing_parts(
    tiny_nvembed_folder, corpus_file, one_worker_run, local_ray, tmp_path
):
    many_parts = dict(rows_per_file=2)  # 30 parts: a kill after the first lands mid-run
    out = tmp_path / "killed"
    command = [
        sys.executable, "-m", "corpus.encode", str(tiny_nvembed_folder), "--input", str(corpus_file), "--output",
        str(out), "--rows-per-file", "2", "--batch-size", "4", "--id-column", "id", "--address", local_ray,
        "--cpus-per-worker", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*.parquet")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"encoder ended or stalled before its first part: {proc.stderr.read().decode()[-3000:]}")
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)  # the driver dies; Ray ends its job's actors
    proc.wait()
    proc.stderr.close()
    time.sleep(1.0)  # let Ray reap the killed job's actors before the rerun asks for their CPUs
    before = stamps(out)
    assert 0 < len(before) < NUM_ROWS // 2, len(before)
    (out / ".tmp-part-00029.parquet.12345").write_bytes(b"partial")  # as a kill mid-write leaves

    result = encode_corpus(config(tiny_nvembed_folder, corpus_file, **many_parts), out, num_workers=1)
    written = sorted(int(name[5:10]) for name in before)
    assert result["encoded"] == [i for i in range(NUM_ROWS // 2) if i not in written]
    assert {name: stamp for name, stamp in stamps(out).items() if name in before} == before  # finished: untouched
    assert not list(out.glob(".tmp-*"))
    ids, vectors, _ = read_output(out)
    ids_1, vectors_1, _ = read_output(one_worker_run)
    assert ids == ids_1
    np.testing.assert_allclose(vectors, vectors_1, atol=1e-6)  # other batches (4 vs 2 texts): same vectors

    # A second kill-free rerun after deleting two parts recomputes exactly those two.
    for name in ("part-00003.parquet", "part-00017.parquet"):
        (out / name).unlink()
    before = stamps(out)
    result = encode_corpus(config(tiny_nvembed_folder, corpus_file, **many_parts), out, num_workers=1)
    assert result["encoded"] == [3, 17]
    assert stamps(out).keys() - before.keys() == {"part-00003.parquet", "part-00017.parquet"}
    assert {name: stamp for name, stamp in stamps(out).items() if name in before} == before


def test_resume_with_another_model_is_refused(tiny_nvembed_folder, corpus_file, one_worker_run, tmp_path):
    from safetensors.torch import load_file, save_file

    # A "retrained" model: same architecture, same file sizes, one weight changed.
    retrained = shutil.copytree(tiny_nvembed_folder, tmp_path / "retrained")
    weights = retrained / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    size = weights.stat().st_size
    save_file(tensors, weights, metadata={"format": "pt"})
    assert weights.stat().st_size == size

    copy = shutil.copytree(one_worker_run, tmp_path / "copy")
    (copy / "part-00004.parquet").unlink()
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    with pytest.raises(ValueError, match=r"model fingerprint .*changed model files: model.safetensors: \w+ -> \w+"):
        encode_corpus(config(retrained, corpus_file), copy, num_workers=1)
    with pytest.raises(ValueError, match=r"config.rows_per_file: 6 -> 5"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file, rows_per_file=5), copy, num_workers=1)
    with pytest.raises(ValueError, match=r"config.prompt_name: None -> 'query'"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file, prompt_name="query"), copy, num_workers=1)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before  # refused before touching anything

    # A part file made by another model, even beside a matching manifest, is refused too.
    write_part(copy / "part-00001.parquet", ["doc-6"], np.ones((1, 32), np.float32), fingerprint="0" * 64)
    with pytest.raises(ValueError, match=r"part-00001.parquet was written by the model with fingerprint 000000000000"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file), copy, num_workers=1)
    (copy / "manifest.json").unlink()
    with pytest.raises(ValueError, match="not empty and has no manifest.json"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file), copy, num_workers=1)


def test_parquet_input_with_prompt_matches_encode(tiny_nvembed_folder, tmp_path):
    import pyarrow as pa
    from sentence_transformers import SentenceTransformer

    rows = [{"pid": 1000 + i, "body": r["text"]} for i, r in enumerate(corpus_rows(17))]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "passages.parquet", row_group_size=7)  # parts cross groups
    cfg = EncodeConfig(
        model=str(tiny_nvembed_folder), inputs=[str(tmp_path / "passages.parquet")], text_column="body",
        id_column="pid", rows_per_file=5, batch_size=3, prompt_name="query",
    )  # fmt: skip
    result = encode_corpus(cfg, tmp_path / "out", num_workers=1)
    assert result["encoded"] == [0, 1, 2, 3] and result["rows"] == 17
    ids, vectors, _ = read_output(tmp_path / "out")
    assert ids == [r["pid"] for r in rows]
    model = SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")
    expected = model.encode([r["body"] for r in rows], prompt_name="query", batch_size=3)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    with pytest.raises(ValueError, match="has no column"):
        encode_corpus(EncodeConfig(**{**cfg.__dict__, "text_column": "text"}), tmp_path / "new", num_workers=1)
