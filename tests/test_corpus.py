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
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.name != ".lock"}  # the lock names its holder
    with pytest.raises(ValueError, match=r"model fingerprint .*changed model files: model.safetensors: \w+ -> \w+"):
        encode_corpus(config(retrained, corpus_file), copy, num_workers=1)
    with pytest.raises(ValueError, match=r"config.rows_per_file: 6 -> 5"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file, rows_per_file=5), copy, num_workers=1)
    with pytest.raises(ValueError, match=r"config.prompt_name: None -> 'query'"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file, prompt_name="query"), copy, num_workers=1)
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.name != ".lock"} == before  # refused untouched

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


def test_input_edited_in_place_to_the_same_size_is_refused(tiny_nvembed_folder, corpus_file, tmp_path):
    edited = shutil.copy(corpus_file, tmp_path / "passages.jsonl")
    out = tmp_path / "out"
    assert encode_corpus(config(tiny_nvembed_folder, edited, rows_per_file=30), out, num_workers=1)["encoded"] == [
        0,
        1,
    ]
    (out / "part-00001.parquet").unlink()  # an interrupted run
    text = edited.read_text()
    edited.write_text(text.replace('"1 gzip', '"7 gzip', 1))  # one row's text, same size
    assert edited.stat().st_size == corpus_file.stat().st_size and edited.read_text() != text
    with pytest.raises(ValueError, match=rf"inputs.{edited}: .*'sha256': '\w+'.* -> "):
        encode_corpus(config(tiny_nvembed_folder, edited, rows_per_file=30), out, num_workers=1)
    assert not (out / "part-00001.parquet").exists()


def test_unreadable_or_wrong_parts_are_encoded_again(tiny_nvembed_folder, corpus_file, one_worker_run, tmp_path):
    copy = shutil.copytree(one_worker_run, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    model = manifest["model_fingerprint"]["sha256"]
    truncated = copy / "part-00002.parquet"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # a disk filled mid-copy
    rows = corpus_rows(NUM_ROWS)
    ids = [r["id"] for r in rows[30:36]]  # part 5's rows, but other vectors and no rows fingerprint
    write_part(copy / "part-00005.parquet", ids, np.ones((6, 32), np.float32), model)
    part_7 = manifest["parts"][7]["sha256"]
    write_part(copy / "part-00007.parquet", ids[:3], np.ones((3, 32), np.float32), model, part_7)  # 3 rows of 6
    before = stamps(copy)

    result = encode_corpus(config(tiny_nvembed_folder, corpus_file), copy, num_workers=1)
    assert result["encoded"] == [2, 5, 7]
    kept = {
        name: stamp for name, stamp in stamps(copy).items() if name not in {f"part-0000{i}.parquet" for i in (2, 5, 7)}
    }
    assert kept == {name: stamp for name, stamp in before.items() if name in kept} and len(kept) == 7
    ids, vectors, _ = read_output(copy)
    ids_1, vectors_1, _ = read_output(one_worker_run)
    assert ids == ids_1
    np.testing.assert_allclose(vectors, vectors_1, atol=1e-6)  # 2 torch threads here, 1 there: ulps apart
    meta = pq.read_schema(copy / "part-00005.parquet").metadata
    assert meta[b"nvembed.rows_sha256"].decode() == manifest["parts"][5]["sha256"]


BAD_ROWS = [
    ({"text": "no id here"}, r"passages.jsonl line 4: the id \('id'\) is missing or null"),
    ({"id": None, "text": "null id"}, r"passages.jsonl line 4: the id \('id'\) is missing or null"),
    (
        {"id": 17, "text": "an int among strings"},
        r"line 4: the id 17 is a int, but the first id \(passages.jsonl line 1",
    ),
    ({"id": "doc-1", "text": "again"}, r"line 4: the id 'doc-1' is a duplicate of passages.jsonl line 2"),
    ({"id": "doc-x", "text": 5}, r"line 4: 'text' is int 5, not a string"),
    ({"id": ["a"], "text": "list id"}, r"line 4: the id list \['a'\] is not a string or an integer"),
]


@pytest.mark.parametrize("bad, message", BAD_ROWS, ids=[str(i) for i in range(len(BAD_ROWS))])
def test_bad_ids_and_texts_are_refused_naming_the_first_bad_row(tiny_nvembed_folder, tmp_path, bad, message):
    rows = corpus_rows(6)
    path = tmp_path / "passages.jsonl"
    path.write_text(
        "".join(json.dumps(r) + "\n" for r in rows[:3]) + json.dumps(bad) + "\n" + json.dumps(rows[5]) + "\n"
    )
    with pytest.raises(ValueError, match=message):
        encode_corpus(config(tiny_nvembed_folder, path), tmp_path / "out", num_workers=1)
    assert not list((tmp_path / "out").glob("part-*"))


def test_parquet_ids_are_checked_too(tiny_nvembed_folder, tmp_path):
    import pyarrow as pa

    pq.write_table(
        pa.table({"id": [5, 6, 5], "text": ["a b", "c d", "e f"]}), tmp_path / "p.parquet", row_group_size=2
    )
    with pytest.raises(ValueError, match=r"p.parquet row 2: the id 5 is a duplicate of p.parquet row 0"):
        encode_corpus(config(tiny_nvembed_folder, tmp_path / "p.parquet"), tmp_path / "out", num_workers=1)


def test_a_second_run_on_one_folder_is_refused_until_the_first_dies(tiny_nvembed_folder, corpus_file, tmp_path):
    from corpus.encode import OutputLock

    out = tmp_path / "out"
    other = ray.remote(OutputLock).options(num_cpus=0).remote(str(out))
    assert ray.get(other.acquire.remote("the other run", 0.0)) is None
    with pytest.raises(ValueError, match=r"being written by another run \(the other run\)"):
        encode_corpus(config(tiny_nvembed_folder, corpus_file, rows_per_file=30), out, num_workers=1, lock_wait_s=0.5)
    assert not list(out.glob("part-*"))
    ray.kill(other)  # a killed run: its lock goes with its process, no stale lock file to delete
    result = encode_corpus(config(tiny_nvembed_folder, corpus_file, rows_per_file=30), out, num_workers=1)
    assert result["encoded"] == [0, 1]


def test_cpu_clusters_get_one_worker_per_node():
    from corpus.encode import worker_layout

    node = lambda alive=True, **resources: {"Alive": alive, "Resources": resources}  # noqa: E731
    # Two CPU nodes of 8 and 4 cores: the old default asked for one worker with 12 CPUs, which no node has.
    assert worker_layout([node(CPU=8.0), node(CPU=4.0), node(False, CPU=64.0)], None, None) == (2, 4, 0)
    assert worker_layout([node(CPU=8.0), node(CPU=8.0)], 4, None) == (4, 4, 0)  # two per node share its cores
    assert worker_layout([node(CPU=8.0), node(CPU=8.0)], None, 2) == (2, 2, 0)
    assert worker_layout([node(CPU=16.0, GPU=2.0), node(CPU=16.0, GPU=2.0)], None, None) == (4, 1, 1)
    with pytest.raises(ValueError, match="no alive node with a CPU"):
        worker_layout([node(False, CPU=8.0)], None, None)


def test_parquet_parts_are_read_by_batches(tmp_path):
    """A part of 10 rows from a file of one 250k-row row group decodes a batch, not the whole group (~110 MB)."""
    import pyarrow as pa

    path = tmp_path / "one-group.parquet"
    rows = 250_000
    texts = pa.array([f"{i:08d} " * 50 for i in range(rows)])  # 450 bytes each, compresses well on disk
    pq.write_table(pa.table({"id": pa.array(range(rows)), "text": texts}), path, row_group_size=rows)
    script = f"""
import resource, sys
import pyarrow.parquet
sys.path.insert(0, {str(ROOT)!r})
from corpus.encode import EncodeConfig, Part, read_part, _row_bytes
import hashlib
cfg = EncodeConfig(model="m", inputs=[{str(path)!r}], id_column="id")
digest = hashlib.sha256()
for i in range(1000, 1010):
    digest.update(_row_bytes(i, f"{{i:08d}} " * 50))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ids, texts = read_part(Part(0, cfg.inputs[0], 1000, 1010, 1000, sha256=digest.hexdigest()), cfg)
assert ids == list(range(1000, 1010)), ids
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) < 40, f"reading 10 rows grew the process by {out.stdout.strip()} MB"
