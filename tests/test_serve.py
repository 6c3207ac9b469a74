"""The Ray Serve embedding server (`python -m serve`) on 127.0.0.1 with the tiny NV-Embed folder, through the openai
client and plain HTTP: its vectors are SentenceTransformer.encode's, 8 concurrent clients get no failure and share
batches, and bad input gets a clear 4xx while the server stays up (a few seconds each after start-up)."""

import base64
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import ray
from openai import BadRequestError, NotFoundError, OpenAI
from ray import serve

from modeling_nvembed import format_instruction
from serve.app import NVEmbedEncoder, build_app


NAME = "tiny-nvembed"
MAX_INPUTS, MAX_TOKENS, MAX_BYTES = 8, 128, 20000
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


def post(url: str, payload, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def server(tiny_nvembed_folder) -> str:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    options = dict(model_name=NAME, max_batch_size=16, batch_wait_timeout_s=0.01, max_inputs=MAX_INPUTS)
    options.update(max_tokens=MAX_TOKENS, max_request_bytes=MAX_BYTES, threads=1)
    serve.run(build_app(str(tiny_nvembed_folder), **options), name="nvembed", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if get(f"{url}/health")[0] == 200:
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield url
    serve.shutdown()
    ray.shutdown()


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
    status, floats = post(f"{server}/v1/embeddings", {"model": NAME, "input": TEXTS, "encoding_format": "float"})
    assert status == 200 and floats["object"] == "list" and floats["data"][0]["object"] == "embedding"
    status, encoded = post(f"{server}/v1/embeddings", {"model": NAME, "input": TEXTS, "encoding_format": "base64"})
    assert status == 200
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded["data"]])
    np.testing.assert_array_equal(decoded, np.array([d["embedding"] for d in floats["data"]], dtype=np.float32))
    np.testing.assert_allclose(decoded, model.encode(TEXTS), atol=1e-5)
    tokens = sum(len(ids) for ids in model.tokenizer(TEXTS)["input_ids"])
    assert floats["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    status, health = get(f"{server}/health")
    assert status == 200 and health["status"] == "ok" and health["dimensions"] == decoded.shape[1]
    assert get(f"{server}/v1/models")[1]["data"][0]["id"] == NAME


def test_eight_concurrent_clients_never_fail_and_share_batches(server, model):
    texts = [f"{i} {TEXTS[i % len(TEXTS)]}" for i in range(40)]
    expected = dict(zip(texts, model.encode(texts)))
    failures, checked = [], []

    def one_client(k: int) -> None:
        openai = client(server)
        for r in range(50):  # bounded: 50 requests, then the thread ends
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
    assert failures == [] and len(checked) == 8 * 50
    assert get(f"{server}/health")[1]["max_batch_size_seen"] > 1  # texts of concurrent requests shared a batch


BAD_REQUESTS = [
    ({"input": ""}, 400, r"input\[0\] is empty"),
    ({"input": ["fine", "   "]}, 400, r"input\[1\] is empty"),
    ({"input": []}, 400, "empty list"),
    ({"input": ["text"] * (MAX_INPUTS + 1)}, 400, f"at most {MAX_INPUTS} per request"),
    ({"input": "gzip deflate " * 100}, 400, rf"tokens \(instruction included\); .* at most {MAX_TOKENS}\."),
    ({"input": 123}, 400, "input"),
    ({"input": [1, 2, 3]}, 400, "valid string"),
    ({"input": ["text", 5]}, 400, "valid string"),
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
]


@pytest.mark.parametrize("payload, status, message", BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_bad_input_gets_a_clear_4xx_and_the_server_stays_up(server, payload, status, message):
    got, body = post(f"{server}/v1/embeddings", {"model": NAME, **payload})
    assert got == status, body
    assert body["error"]["type"] in ("invalid_request_error", "model_not_found")
    assert re.search(message, body["error"]["message"]), body["error"]["message"]
    assert post(f"{server}/v1/embeddings", {"model": NAME, "input": "still up"})[0] == 200


def test_malformed_and_oversized_bodies_and_client_errors(server):
    status, body = post(f"{server}/v1/embeddings", None, raw=b'{"model": "tiny-nvembed", "input": ')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = post(f"{server}/v1/embeddings", {"model": NAME, "input": ["x" * 1000] * (MAX_BYTES // 1000 + 1)})
    assert status == 413 and f"at most {MAX_BYTES}" in body["error"]["message"]
    openai = client(server)
    with pytest.raises(BadRequestError, match="Matryoshka"):
        openai.embeddings.create(model=NAME, input="text", dimensions=4)
    with pytest.raises(NotFoundError, match="does not exist"):
        openai.embeddings.create(model="text-embedding-3-small", input="text")
    assert get(f"{server}/health")[0] == 200


def test_counting_tokens_while_a_batch_encodes_breaks_neither(tiny_nvembed_folder, model):
    """The server counts a request's tokens on its event loop while a batch encodes in a worker thread. On one shared
    fast tokenizer that broke the batch ("Unable to create tensor", tens of times in a few seconds)."""
    encoder = NVEmbedEncoder(str(tiny_nvembed_folder), max_tokens=MAX_TOKENS, threads=1)
    texts = [f"{TEXTS[i % len(TEXTS)]} " * (1 + i % 3) for i in range(16)]
    expected = model.encode(texts, batch_size=16)
    errors, stop = [], time.monotonic() + 2.5

    def encode_batches() -> None:
        while time.monotonic() < stop:
            try:
                got = np.stack(encoder.encode_items([(t, "") for t in texts]))
                np.testing.assert_allclose(got, expected, atol=1e-5)
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(error)[:200])

    thread = threading.Thread(target=encode_batches)
    thread.start()
    counted = 0
    while time.monotonic() < stop:
        encoder.check_texts(texts[:MAX_INPUTS], "")
        counted += 1
    thread.join()
    assert errors == [] and counted > 10
