"""The Ray Serve embedding server (`python -m serve`) on 127.0.0.1 with the tiny NV-Embed folder, through the openai
client, plain HTTP and raw sockets: its vectors are SentenceTransformer.encode's, concurrent single-text requests share
token-budget batches, bad input gets a clear 4xx in OpenAI's format while the server stays up, and the operations side
(API key, 429 with Retry-After, request timeout, readiness 503, /metrics, chunked-body 413, SIGTERM removing only its
own app) does what it says (a few seconds each after start-up; every load loop is bounded in count and time)."""

import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import ray
from openai import BadRequestError, NotFoundError, OpenAI
from ray import serve

from modeling_nvembed import format_instruction
from serve.app import NVEmbedEncoder, QueuedText, build_app


ROOT = Path(__file__).resolve().parents[1]
NAME = "tiny-nvembed"
MAX_INPUTS, MAX_TOKENS, MAX_BYTES, MAX_REQUEST_TOKENS, MAX_BATCH_TOKENS = 8, 128, 20000, 900, 256
KEY = "secret-key"
TEXTS = [
    "gzip compresses files with the deflate algorithm",
    "the quick brown fox jumps over the lazy dog",
    "network time protocol daemon keeps clocks in sync",
    "a library for parsing command line options",
    "python email package builds and parses messages",
]
TASK = "Given a question, retrieve passages that answer it"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, payload, raw: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, dict]:
    data = raw if raw is not None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), {k.lower(): v for k, v in error.headers.items()}


def get(url: str, headers: dict | None = None) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if "json" in response.headers["content-type"] else text
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_healthy(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if get(f"{url}/health")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/health did not answer 200 within {seconds} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster() -> str:
    # as `python -m serve` does: the proxy's 5 s readiness check fails on a host whose cores are busy
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)  # logical CPUs: three apps of one replica
    yield ray.get_runtime_context().gcs_address
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def port(cluster) -> int:
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port


@pytest.fixture(scope="module")
def server(tiny_nvembed_folder, port) -> str:
    options = dict(model_name=NAME, max_batch_size=16, batch_wait_timeout_s=0.01, max_inputs=MAX_INPUTS)
    options.update(max_tokens=MAX_TOKENS, max_request_tokens=MAX_REQUEST_TOKENS, max_request_bytes=MAX_BYTES)
    options.update(max_batch_tokens=MAX_BATCH_TOKENS, threads=1)
    serve.run(build_app(str(tiny_nvembed_folder), **options), name="nvembed", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    return url


@pytest.fixture(scope="module")
def tight_server(tiny_nvembed_folder, server, port) -> str:
    """A second app with an API key, one request in flight at most, batches that wait 2 s to fill, requests that time
    out after 1 s and a readiness check that must finish in 0.5 s: so 429, 503 and the readiness 503 are certain."""
    options = dict(model_name=NAME, max_concurrent_requests=1, batch_wait_timeout_s=2.0, request_timeout_s=1.0)
    options.update(health_timeout_s=0.5, api_key_sha256=hashlib.sha256(KEY.encode()).hexdigest(), threads=1)
    serve.run(build_app(str(tiny_nvembed_folder), **options), name="tight", route_prefix="/tight")
    url = f"http://127.0.0.1:{port}/tight"
    deadline = time.monotonic() + 120
    while get(f"{url}/metrics")[0] != 200:  # its /health is 503 by design: wait for /metrics instead
        assert time.monotonic() < deadline, "the tight app did not start"
        time.sleep(0.2)
    return url


def metric(text: str, name: str) -> float:
    """The value of one sample line of Prometheus text output (`name` includes its labels)."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"no sample {name} in /metrics"
    return float(found.group(1))


@pytest.fixture(scope="module")
def model(tiny_nvembed_folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")


def client(url: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def vectors(response) -> np.ndarray:
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def test_openai_client_gets_the_vectors_of_encode(server, model):
    openai = client(server)
    # The client asks for base64 unless told otherwise, and decodes it.
    default = openai.embeddings.create(model=NAME, input=TEXTS)
    np.testing.assert_allclose(vectors(default), model.encode(TEXTS), atol=1e-5)
    floats = openai.embeddings.create(model=NAME, input=TEXTS[1], encoding_format="float")
    np.testing.assert_allclose(vectors(floats), model.encode(TEXTS[1:2]), atol=1e-5)
    assert floats.model == NAME and floats.usage.prompt_tokens > 0
    dim = model.get_embedding_dimension()
    same_dim = openai.embeddings.create(model=NAME, input=TEXTS, dimensions=dim)
    assert vectors(same_dim).shape == (len(TEXTS), dim)

    queries = ["how do I compress a file", "what keeps clocks in sync"]
    instructed = vectors(openai.embeddings.create(model=NAME, input=queries, extra_body={"instruction": TASK}))
    np.testing.assert_allclose(instructed, model.encode(queries, prompt=format_instruction(TASK)), atol=1e-5)
    named = vectors(openai.embeddings.create(model=NAME, input=queries, extra_body={"prompt_name": "query"}))
    np.testing.assert_allclose(named, model.encode(queries, prompt_name="query"), atol=1e-5)
    assert np.abs(instructed - vectors(openai.embeddings.create(model=NAME, input=queries))).max() > 1e-3


def test_plain_http_float_base64_health_and_models(server, model):
    status, floats, _ = post(f"{server}/v1/embeddings", {"model": NAME, "input": TEXTS, "encoding_format": "float"})
    assert status == 200 and floats["object"] == "list" and floats["data"][0]["object"] == "embedding"
    status, encoded, _ = post(f"{server}/v1/embeddings", {"model": NAME, "input": TEXTS, "encoding_format": "base64"})
    assert status == 200
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded["data"]])
    np.testing.assert_array_equal(decoded, np.array([d["embedding"] for d in floats["data"]], dtype=np.float32))
    np.testing.assert_allclose(decoded, model.encode(TEXTS), atol=1e-5)
    tokens = sum(len(ids) for ids in model.tokenizer(TEXTS)["input_ids"])
    assert floats["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    status, health = get(f"{server}/health")
    assert status == 200 and health["status"] == "ok" and health["dimensions"] == decoded.shape[1]
    assert get(f"{server}/v1/models")[1]["data"][0]["id"] == NAME


def test_eight_concurrent_clients_never_fail(server, model):
    texts = [f"{i} {TEXTS[i % len(TEXTS)]}" for i in range(40)]
    expected = dict(zip(texts, model.encode(texts)))
    failures, checked = [], []
    deadline = time.monotonic() + 240

    def one_client(k: int) -> None:
        openai = client(server)
        for r in range(30):  # bounded: 30 requests or the deadline, then the thread ends
            if time.monotonic() > deadline:
                break
            batch = [texts[(k * 50 + r + j) % len(texts)] for j in range(1 + (k + r) % 3)]
            try:
                got = vectors(openai.embeddings.create(model=NAME, input=batch))
                np.testing.assert_allclose(got, np.stack([expected[t] for t in batch]), atol=1e-5)
                checked.append(len(batch))
            except Exception as error:  # noqa: BLE001 - every failure is collected and reported below
                failures.append(f"client {k} request {r}: {error!r}")

    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert failures == [] and len(checked) == 8 * 30


def test_concurrent_single_text_requests_share_batches_within_the_token_budget(server, model):
    """Every request carries one text, so a batch of more than one text holds texts of several requests."""
    before = get(f"{server}/metrics")[1]
    texts = [f"{i} {TEXTS[i % len(TEXTS)]}" for i in range(16)]
    expected = dict(zip(texts, model.encode(texts)))
    failures = []
    deadline = time.monotonic() + 120

    def one_client(k: int) -> None:
        for r in range(12):  # bounded in count and time
            if time.monotonic() > deadline:
                break
            text = texts[(k + r) % len(texts)]
            status, body, _ = post(f"{server}/v1/embeddings", {"model": NAME, "input": text})
            if status != 200 or not np.allclose(body["data"][0]["embedding"], expected[text], atol=1e-5):
                failures.append((k, r, status))

    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    assert not any(t.is_alive() for t in threads) and failures == []
    after = get(f"{server}/metrics")[1]
    batches = metric(after, "nvembed_batch_texts_count") - metric(before, "nvembed_batch_texts_count")
    single = metric(after, 'nvembed_batch_texts_bucket{le="1.0"}') - metric(
        before, 'nvembed_batch_texts_bucket{le="1.0"}'
    )
    assert batches - single > 0, f"all {batches} batches held one text: concurrent requests never shared a batch"
    # Padded tokens per batch never passed the budget.
    assert metric(after, f'nvembed_batch_tokens_bucket{{le="{MAX_BATCH_TOKENS:.1f}"}}') == metric(
        after, "nvembed_batch_tokens_count"
    )
    assert metric(after, 'nvembed_requests_total{status="200"}') >= 8 * 12
    assert metric(after, "nvembed_texts_total") > metric(before, "nvembed_texts_total")


def test_long_texts_are_batched_by_tokens_not_count(server, model):
    """8 texts of 80-128 tokens in one request: one 8-text batch would be ~1000 padded tokens, over the 256 budget."""
    long_texts = [" ".join([f"{i}"] + TEXTS[i % len(TEXTS)].split() * 8)[:150] for i in range(MAX_INPUTS)]
    tokens = [len(ids) for ids in model.tokenizer(long_texts)["input_ids"]]
    assert max(tokens) <= MAX_TOKENS and sorted(tokens)[2] > MAX_BATCH_TOKENS / 3, tokens  # any 3: over budget
    before = get(f"{server}/metrics")[1]
    status, body, _ = post(f"{server}/v1/embeddings", {"model": NAME, "input": long_texts})
    assert status == 200
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], model.encode(long_texts),
                               atol=1e-5)  # fmt: skip
    after = get(f"{server}/metrics")[1]
    batches = metric(after, "nvembed_batch_texts_count") - metric(before, "nvembed_batch_texts_count")
    assert batches >= MAX_INPUTS // 2  # at most 2 of these texts fit a batch
    assert metric(after, f'nvembed_batch_tokens_bucket{{le="{MAX_BATCH_TOKENS:.1f}"}}') == metric(
        after, "nvembed_batch_tokens_count"
    )


def test_truncate_cuts_long_texts_as_the_model_would(server, tiny_nvembed_folder):
    from sentence_transformers import SentenceTransformer

    long_text = " ".join(TEXTS * 10)
    status, body, _ = post(f"{server}/v1/embeddings", {"model": NAME, "input": [long_text, TEXTS[0]]})
    assert (
        status == 400
        and f"at most {MAX_TOKENS}" in body["error"]["message"]
        and "truncate" in body["error"]["message"]
    )
    status, body, _ = post(
        f"{server}/v1/embeddings", {"model": NAME, "input": [long_text, TEXTS[0]], "truncate": True}
    )
    assert status == 200
    cut = SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")
    cut.max_seq_length = MAX_TOKENS
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], cut.encode([long_text, TEXTS[0]]), atol=1e-5)
    assert body["usage"]["prompt_tokens"] == MAX_TOKENS + len(cut.tokenizer(TEXTS[0])["input_ids"])


def test_token_id_input_gives_the_vectors_of_its_text(server, model):
    """Token ids are the text's own (no special tokens): the server adds the tokenizer's special tokens and the
    instruction, so ids give the text's vector, plain, instructed and cut by `truncate` alike."""
    ids = [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    openai = client(server)
    plain = openai.embeddings.create(model=NAME, input=ids, encoding_format="float")
    np.testing.assert_allclose(vectors(plain), model.encode(TEXTS), atol=1e-5)
    assert plain.usage.prompt_tokens == sum(len(t) for t in model.tokenizer(TEXTS)["input_ids"])
    one = vectors(openai.embeddings.create(model=NAME, input=ids[1], encoding_format="float"))  # one list of ints
    np.testing.assert_allclose(one, model.encode(TEXTS[1:2]), atol=1e-5)
    instructed = openai.embeddings.create(model=NAME, input=ids[:2], extra_body={"instruction": TASK})
    np.testing.assert_allclose(vectors(instructed), model.encode(TEXTS[:2], prompt=format_instruction(TASK)),
                               atol=1e-5)  # fmt: skip
    named = vectors(openai.embeddings.create(model=NAME, input=ids[:2], extra_body={"prompt_name": "query"}))
    np.testing.assert_allclose(named, model.encode(TEXTS[:2], prompt_name="query"), atol=1e-5)

    long_text = " ".join(TEXTS * 10)
    long_ids = model.tokenizer(long_text, add_special_tokens=False)["input_ids"]
    by_text = post(f"{server}/v1/embeddings", {"model": NAME, "input": long_text, "truncate": True})[1]
    status, by_ids, _ = post(f"{server}/v1/embeddings", {"model": NAME, "input": long_ids, "truncate": True})
    assert status == 200 and by_ids["usage"] == by_text["usage"] and by_ids["usage"]["prompt_tokens"] == MAX_TOKENS
    np.testing.assert_allclose(by_ids["data"][0]["embedding"], by_text["data"][0]["embedding"], atol=1e-5)


def test_special_token_wrap_reads_the_tokenizers_own_special_tokens(model):
    from serve.app import special_token_wrap

    head, tail = special_token_wrap(model.tokenizer)
    core = model.tokenizer("gzip", add_special_tokens=False)["input_ids"]
    assert head + core + tail == model.tokenizer("gzip")["input_ids"] and head + tail  # the tiny one adds some


BAD_REQUESTS = [
    ({"input": ""}, 400, r"input\[0\] is empty"),
    ({"input": ["fine", "   "]}, 400, r"input\[1\] is empty"),
    ({"input": []}, 400, "empty list"),
    ({"input": ["text"] * (MAX_INPUTS + 1)}, 400, f"at most {MAX_INPUTS} per request"),
    ({"input": "gzip deflate " * 100}, 400, rf"tokens \(instruction included\); .* at most {MAX_TOKENS}\."),
    ({"input": 123}, 400, "input"),
    ({"input": ["text", 5]}, 400, "valid string"),
    ({"input": [[5, 6], "text"]}, 400, "valid list"),
    ({"input": [[5, 6], []]}, 400, r"input\[1\] is an empty list of token ids"),
    ({"input": [5, 10**7]}, 400, r"input\[0\] holds the token id 10000000, outside this model's vocabulary"),
    ({"input": [[5], [-1]]}, 400, r"input\[1\] holds the token id -1"),
    ({"input": [5, True]}, 400, "valid integer"),
    ({"input": [5] * (MAX_TOKENS + 1)}, 400, rf"input\[0\] is \d+ tokens .* at most {MAX_TOKENS}\."),
    ({"input": [[5]] * (MAX_INPUTS + 1)}, 400, f"at most {MAX_INPUTS} per request"),
    ({"input": "text", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"input": "text", "dimensions": 8}, 400, "not trained with a Matryoshka loss"),
    ({"input": "text", "dimensions": "32"}, 400, "dimensions"),
    ({"input": "text", "dimensions": 0}, 400, "dimensions"),
    ({"input": "text", "temperature": 1}, 400, "temperature: Extra inputs are not permitted"),
    ({"input": "text", "prompt_name": "nope"}, 400, "no prompt 'nope'"),
    ({"input": "text", "prompt_name": "query", "instruction": TASK}, 400, "not both"),
    ({"input": "text", "instruction": " "}, 400, "instruction` is empty"),
    ({"input": "text", "model": "gpt-4"}, 404, "does not exist; this server serves 'tiny-nvembed'"),
    ({"model": NAME}, 400, "input: Field required"),
    ({"input": ["gzip deflate " * 10] * 8}, 400, rf"the request is \d+ tokens; .* at most {MAX_REQUEST_TOKENS} per"),
    ({"input": "text", "truncate": "yes"}, 400, "truncate"),
]


@pytest.mark.parametrize("payload, status, message", BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_bad_input_gets_a_clear_4xx_and_the_server_stays_up(server, payload, status, message):
    got, body, _ = post(f"{server}/v1/embeddings", {"model": NAME, **payload})
    assert got == status, body
    assert body["error"]["type"] == "invalid_request_error"  # OpenAI's, for an unknown model too
    assert body["error"]["code"] == ("model_not_found" if status == 404 else None)
    assert re.search(message, body["error"]["message"]), body["error"]["message"]
    assert post(f"{server}/v1/embeddings", {"model": NAME, "input": "still up"})[0] == 200


def test_a_matryoshka_folder_serves_exactly_its_trained_sizes(tiny_nvembed_folder, server, port, model, tmp_path):
    """`dimensions` = one of config.json's `matryoshka_dimensions` gives the full vector's first values re-normalized
    (what sentence-transformers' truncate_dim + normalize give); any other size is refused naming the trained ones."""
    import shutil

    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "mrl"
    shutil.copytree(tiny_nvembed_folder, folder)
    full = model.get_embedding_dimension()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "matryoshka_dimensions": [8, 16, full]}))
    serve.run(build_app(str(folder), model_name=NAME, threads=1), name="mrl", route_prefix="/mrl")
    url = f"http://127.0.0.1:{port}/mrl"
    wait_healthy(url)
    try:
        openai = client(url)
        cut = vectors(openai.embeddings.create(model=NAME, input=TEXTS, dimensions=8))
        expected = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu", truncate_dim=8).encode(
            TEXTS, normalize_embeddings=True
        )
        np.testing.assert_allclose(cut, expected, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(vectors(openai.embeddings.create(model=NAME, input=TEXTS)), model.encode(TEXTS),
                                   atol=1e-5)  # fmt: skip
        status, body, _ = post(f"{url}/v1/embeddings", {"model": NAME, "input": "text", "dimensions": 12})
        assert status == 400 and f"trained the sizes [8, 16, {full}]" in body["error"]["message"], body
    finally:
        serve.delete("mrl")


def test_malformed_and_oversized_bodies_and_client_errors(server):
    status, body, _ = post(f"{server}/v1/embeddings", None, raw=b'{"model": "tiny-nvembed", "input": ')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body, _ = post(f"{server}/v1/embeddings", None, raw=b"[" * 5000 + b"]" * 5000)
    assert status == 400 and "nested too deeply" in body["error"]["message"]  # was a plain 500 (RecursionError)
    status, body, _ = post(f"{server}/v1/embeddings", {"model": NAME, "input": ["x" * 1000] * (MAX_BYTES // 1000 + 1)})
    assert status == 413 and f"at most {MAX_BYTES}" in body["error"]["message"]
    status, body = get(f"{server}/v1/nothing-here")
    assert (
        status == 404
        and body["error"]["type"] == "invalid_request_error"
        and "/v1/nothing-here" in body["error"]["message"]
    )
    openai = client(server)
    with pytest.raises(BadRequestError, match="Matryoshka"):
        openai.embeddings.create(model=NAME, input="text", dimensions=4)
    with pytest.raises(NotFoundError, match="does not exist"):
        openai.embeddings.create(model="text-embedding-3-small", input="text")
    assert get(f"{server}/health")[0] == 200


def test_tokenizing_while_a_batch_encodes_breaks_neither(tiny_nvembed_folder, model):
    """Requests are tokenized in a tokenization thread while a batch encodes in another. On one shared fast tokenizer
    that broke the batch ("Unable to create tensor", tens of times in a few seconds)."""
    encoder = NVEmbedEncoder(str(tiny_nvembed_folder), max_tokens=MAX_TOKENS, threads=1)
    texts = [f"{TEXTS[i % len(TEXTS)]} " * (1 + i % 3) for i in range(16)]
    expected = model.encode(texts, batch_size=16)
    features = encoder.tokenize(texts, "")[0]
    items = [QueuedText(f, "", 0, 1.0) for f in features]
    errors, stop = [], time.monotonic() + 2.5

    def encode_batches() -> None:
        while time.monotonic() < stop:
            try:
                np.testing.assert_allclose(np.stack(encoder.encode_items(items)), expected, atol=1e-5)
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(error)[:200])

    thread = threading.Thread(target=encode_batches)
    thread.start()
    counted = 0
    while time.monotonic() < stop:
        encoder.tokenizer_pool.submit(encoder.tokenize, texts[:MAX_INPUTS], "").result(timeout=10)
        counted += 1
    thread.join()
    assert errors == [] and counted > 10


def test_a_failing_text_fails_only_its_own_request(tiny_nvembed_folder, model):
    """One request's token ids are out of the vocabulary (the embedding lookup raises): the batch is retried request by
    request, so the others still get their vectors and only that request gets the error."""
    encoder = NVEmbedEncoder(str(tiny_nvembed_folder), max_tokens=MAX_TOKENS, threads=1)
    good = [QueuedText(f, "", 1, 1.0) for f in encoder.tokenize(TEXTS[:2], "")[0]]
    bad_features = encoder.tokenize(TEXTS[2:3], "")[0][0]
    bad = QueuedText({**bad_features, "input_ids": [10**6] * len(bad_features["input_ids"])}, "", 2, 1.0)
    more = [QueuedText(f, "", 3, 1.0) for f in encoder.tokenize(TEXTS[3:5], "")[0]]
    out = encoder.encode_items([good[0], bad, *more, good[1]])
    assert isinstance(out[1], IndexError)
    np.testing.assert_allclose(np.stack([out[0], out[4]]), model.encode(TEXTS[:2]), atol=1e-5)
    np.testing.assert_allclose(np.stack(out[2:4]), model.encode(TEXTS[3:5]), atol=1e-5)


def test_api_key_429_timeout_503_and_readiness_503(tight_server):
    url, auth = f"{tight_server}/v1/embeddings", {"Authorization": f"Bearer {KEY}"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        status, body, _ = post(url, {"model": NAME, "input": "text"}, headers=headers)
        assert status == 401 and body["error"]["code"] == "invalid_api_key", body
    assert get(f"{tight_server}/v1/models")[0] == 401
    assert get(f"{tight_server}/v1/models", auth)[1]["data"][0]["id"] == NAME
    assert OpenAI(base_url=f"{tight_server}/v1", api_key=KEY, max_retries=0).models.list().data[0].id == NAME

    # One request in flight at most; each waits 2 s for its batch, so it times out at 1 s; the others meanwhile: 429.
    results, barrier = [], threading.Barrier(6)

    def one_request() -> None:
        barrier.wait(timeout=30)
        try:
            results.append(post(url, {"model": NAME, "input": "text"}, headers=auth))
        except Exception as error:  # noqa: BLE001 - shown in the assertion below
            results.append((repr(error), {}, {}))

    threads = [threading.Thread(target=one_request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    statuses = sorted(status for status, _, _ in results)
    assert all(isinstance(s, int) for s in statuses), statuses
    assert len(results) == 6 and set(statuses) == {429, 503} and statuses.count(503) >= 1, statuses
    for status, body, headers in results:
        assert headers.get("retry-after") == "1"
        if status == 429:
            assert body["error"]["code"] == "rate_limit_exceeded" and "in flight" in body["error"]["message"]
        else:
            assert body["error"] == {"message": body["error"]["message"], "type": "server_error", "param": None,
                                     "code": "timeout"}  # fmt: skip
            assert "over 1.0 s" in body["error"]["message"]

    status, body = get(f"{tight_server}/health")  # open without a key; its forward pass cannot finish in 0.5 s
    assert status == 503 and body["error"]["code"] == "not_ready" and "0.5 s" in body["error"]["message"]
    metrics = get(f"{tight_server}/metrics")[1]
    assert metric(metrics, 'nvembed_requests_total{status="429"}') == statuses.count(429)
    assert metric(metrics, 'nvembed_requests_total{status="401"}') == 3


def test_chunked_body_over_the_limit_is_refused_while_it_streams(server):
    """No Content-Length: the body is counted as it arrives, and the 413 comes before the client has finished (it
    never does here: it sends MAX_BYTES + 1 KB, then waits)."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())  # fmt: skip
        chunk = b"x" * 1000
        for _ in range(MAX_BYTES // 1000 + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.settimeout(20)  # the old server read the whole body first: it would still be waiting here
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert f"over {MAX_BYTES} bytes".encode() in body
    assert post(f"{server}/v1/embeddings", {"model": NAME, "input": "still up"})[0] == 200


def test_sigterm_stops_the_cli_and_removes_only_its_own_app(tiny_nvembed_folder, cluster, server, port):
    command = [
        sys.executable, "-m", "serve", str(tiny_nvembed_folder), "--address", cluster, "--port", str(port),
        "--app-name", "sigterm-test", "--route-prefix", "/sigterm", "--name", NAME, "--cpus-per-replica", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/sigterm", seconds=180)
        assert post(f"http://127.0.0.1:{port}/sigterm/v1/embeddings", {"model": NAME, "input": "x"})[0] == 200
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert "shutting down" in stderr
    assert "sigterm-test" not in serve.status().applications  # its own app is gone ...
    assert get(f"{server}/health")[0] == 200  # ... and the other apps on the cluster still serve
    assert post(f"{server}/v1/embeddings", {"model": NAME, "input": "still up"})[0] == 200


def test_batcher_puts_what_arrived_during_a_batch_into_the_next_one():
    """Ray Serve's @serve.batch formed a batch when its wait ended and queued it behind the running one, so texts that
    arrived during a forward pass ran in several small batches; here they share the next one."""
    from serve.batching import BudgetBatcher

    batches = []

    async def run_batch(items):
        batches.append(list(items))
        await asyncio.sleep(0.3)  # a forward pass
        return [f"v{i}" for i in items]

    async def scenario():
        batcher = BudgetBatcher(run_batch, cost=len, max_cost=32, wait_s=0.005)
        first = batcher.submit(0)
        await asyncio.sleep(0.05)  # the first batch is running
        later = []
        for i in range(1, 7):  # arrive one by one, 20 ms apart (each past the 5 ms wait)
            later.append(batcher.submit(i))
            await asyncio.sleep(0.02)
        return await asyncio.wait_for(asyncio.gather(first, *later), 10)

    assert asyncio.run(scenario()) == [f"v{i}" for i in range(7)]
    assert batches == [[0], [1, 2, 3, 4, 5, 6]]


def test_batcher_keeps_the_budget_and_order_and_skips_cancelled_items():
    from serve.batching import BudgetBatcher

    batches = []

    async def run_batch(items):
        batches.append(list(items))
        await asyncio.sleep(0.05)
        return [ValueError(i) if i == "bad" else i.upper() for i in items]

    def cost(items):  # padded: texts x longest
        return len(items) * max(len(i) for i in items)

    async def scenario():
        batcher = BudgetBatcher(run_batch, cost=cost, max_cost=8, wait_s=0.01)
        with pytest.raises(ValueError, match="over the batch budget 8"):
            batcher.submit("ninechars")
        futures = [batcher.submit(t) for t in ("ab", "cd", "efgh", "gone", "bad", "ij")]
        futures[3].cancel()  # a timed-out request: never run
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 10)

    results = asyncio.run(scenario())
    assert results[:3] == ["AB", "CD", "EFGH"] and isinstance(results[3], asyncio.CancelledError)
    assert isinstance(results[4], ValueError) and results[5] == "IJ"  # a failed item is its caller's result only
    assert batches == [["ab", "cd"], ["efgh", "bad"], ["ij"]]  # in order, each within 8 padded characters
