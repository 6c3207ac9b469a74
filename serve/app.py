"""An OpenAI-compatible embedding server for NV-Embed (or any SentenceTransformer folder) on Ray Serve.

    python -m serve ./nvembed [--host 127.0.0.1] [--port 8000] [--address ray://HEAD:10001] [--replicas N]

Endpoints:
    POST /v1/embeddings   the OpenAI API: `input` (a string, a list of strings, or token ids: one list of ints or a
                          list of them, see "Token ids" below), `model`, `encoding_format`
                          ("float" or "base64": little-endian float32), `dimensions` (the model's own, or one of
                          the sizes a Matryoshka loss trained, `matryoshka_dimensions` in its config.json: the vector's
                          first values, re-normalized when the model's are unit-length; any other size would be
                          meaningless and is refused), `user`;
                          plus `instruction` (a task description, formatted with the model's instruction template,
                          e.g. "Given a question, retrieve passages that answer it") or `prompt_name` (one of the
                          model's prompts, e.g. "query") for queries, and `truncate` (true: cut texts over the token
                          limit instead of refusing them, as TEI's `truncate`). Passages get no instruction.
    GET  /v1/models       the one served model.
    GET  /health          readiness: 200 once one forward pass of a short text went through the batch queue within
                          `health_timeout_s`, else 503.
    GET  /metrics         Prometheus text format: requests by status, texts, tokens, batch sizes (texts and padded
                          tokens), texts waiting in the queue, requests in flight, request latency. Per replica: with
                          several replicas a scrape sees the one that answered (Ray's own metrics cover the rest).

Every text is tokenized once, in a tokenization thread (the event loop stays free, so /health and small requests do
not wait behind a large request's tokenization), then queued on its own; `serve.batching.BudgetBatcher` groups queued
texts of all requests into forward passes of at most `max_batch_tokens` padded tokens (texts x longest) and
`max_batch_size` texts, formed when the model is free (everything that arrived during the last pass joins the next,
which waits at most `batch_wait_timeout_s` more while it has room), so concurrent requests share batches. A forward
pass that fails is retried one request at a time, so only the request whose texts fail gets the error (a 500).

Token ids (`input: [ids]` or `[[ids], ...]`, as OpenAI, vLLM and TEI take them) are the model tokenizer's ids of
the text alone, as `tokenizer(text, add_special_tokens=False)` gives them: the server adds what it adds to a string,
the tokenizer's own special tokens (for SmolLM2's, the EOS after the text) and the instruction's tokens before the
ids, so `input: [ids]` gives the vector of `input: text` whenever the instruction and the text do not merge into one
token across their boundary (the model's instruction template ends in a newline, where they do not). Ids outside the
vocabulary, empty id lists and mixed lists of texts and ids are refused (400); `truncate` cuts the ids from the end.

Every error is answered in OpenAI's format (`{"error": {"message", "type", "param", "code"}}`), 5xx included, and the
server stays up: 400 for bad input (an empty or too long text, too many inputs or tokens, wrong types, unknown fields
or prompt, JSON nested too deeply), 401 for a missing or wrong API key (when one is set), 404 for an unknown model
(`code: model_not_found`) or route, 413 for a body over `max_request_bytes` (checked while a chunked body streams in),
429 with `Retry-After` when `max_concurrent_requests` are in flight, 503 when a request outlives `request_timeout_s`.

Example (Python, with the server above running):
    >>> from openai import OpenAI  # doctest: +SKIP
    >>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")  # doctest: +SKIP
    >>> client.embeddings.create(model="nvembed", input=["how do I unpack a .tar.gz file?"],  # doctest: +SKIP
    ...     extra_body={"instruction": "Given a question, retrieve passages that answer it"}).data[0].embedding[:2]
"""

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve as ray_serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from modeling_nvembed import INSTRUCTION_TEMPLATE
from serve.batching import BudgetBatcher


logger = logging.getLogger(__name__)


class EmbeddingRequest(BaseModel):
    """The body of `POST /v1/embeddings` (OpenAI's, plus `instruction` / `prompt_name` / `truncate`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None
    instruction: str | None = None
    prompt_name: str | None = None
    truncate: bool = False


class APIError(Exception):
    """An error answered as OpenAI answers one: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code
        self.headers = headers

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


def server_error(status: int, message: str, code: str | None = None, **headers) -> APIError:
    return APIError(status, message, kind="server_error", code=code, headers=headers or None)


@dataclass
class QueuedText:
    """One tokenized text of one request, as it waits in the batch queue.

    Args:
        features (`dict`): the tokenizer's output for the text (`input_ids`, `attention_mask`, ...), unpadded.
        prompt (`str`): the instruction or prompt the text starts with ("" for none).
        request (`int`): the request it belongs to (a failed forward pass is retried request by request).
        floor (`float`): the least a text costs in the batch budget, `max_batch_tokens / max_batch_size`, so a batch
            also holds at most `max_batch_size` texts.
    """

    features: dict
    prompt: str
    request: int
    floor: float
    queued: bool = True  # until a batch takes it (or its request gives up)

    @property
    def tokens(self) -> int:
        return len(self.features["input_ids"])


def batch_cost(items: list[QueuedText]) -> float:
    """Ray Serve's `batch_size_fn`: what a batch costs against `max_batch_tokens`, its padded size (texts x the
    longest) or its text count in budget units, whichever is larger."""
    return len(items) * max(max(item.tokens for item in items), items[0].floor)


def special_token_wrap(tokenizer) -> tuple[list[int], list[int]] | None:
    """The special tokens `tokenizer` puts before and after a text's own tokens (SmolLM2's: none before, EOS after;
    Llama's: BOS before), read off one tokenized text; None when its own tokens are not found whole in the result."""
    core = tokenizer("a b", add_special_tokens=False, verbose=False)["input_ids"]
    full = tokenizer("a b", verbose=False)["input_ids"]
    for start in range(len(full) - len(core) + 1):
        if full[start : start + len(core)] == core:
            return full[:start], full[start + len(core) :]
    return None


def matryoshka_dimensions(model) -> list[int] | None:
    """The sizes a Matryoshka loss trained, as the folder's config.json records them (None: only the full size)."""
    first = model[0]
    config = getattr(getattr(first, "auto_model", None), "config", None)
    dims = getattr(config, "matryoshka_dimensions", None)
    return list(dims) if dims else None


def truncate_vector(vector: np.ndarray, size: int) -> np.ndarray:
    """The first `size` values of a Matryoshka-trained vector, re-normalized when the full vector is unit-length
    (NV-Embed's are), so cosine and dot product stay the same thing."""
    cut = vector[:size]
    full_norm = float(np.linalg.norm(vector))
    if abs(full_norm - 1.0) < 1e-3:
        cut = cut / max(float(np.linalg.norm(cut)), 1e-12)
    return cut


class NVEmbedEncoder:
    """The model side of a replica, apart from Ray Serve: tokenizes and checks texts, embeds batches of them.

    Args:
        model_path (`str`): the SentenceTransformer folder.
        max_inputs (`int`, *optional*, defaults to 256): texts per request.
        max_tokens (`int`, *optional*): tokens per text, instruction included; default: the model's max_seq_length.
        max_request_tokens (`int`, *optional*): tokens per request (after truncation); default: no cap beyond
            `max_inputs * max_tokens`.
        threads (`int`, *optional*): torch threads on CPU (default: torch's choice).
        tokenization_workers (`int`, *optional*, defaults to 1): threads that tokenize requests, each with its own
            copy of the tokenizer (a fast tokenizer's padding settings are shared state, so two threads on one break
            each other's calls, "Unable to create tensor").
    """

    def __init__(
        self,
        model_path: str,
        max_inputs: int = 256,
        max_tokens: int | None = None,
        max_request_tokens: int | None = None,
        threads: int | None = None,
        tokenization_workers: int = 1,
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES per replica
        if self.device == "cpu" and threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(model_path, device=self.device, trust_remote_code=True)
        self.model.eval()
        self.dimensions = self.model.get_embedding_dimension()
        self.matryoshka_dimensions = matryoshka_dimensions(self.model)
        self.max_inputs, self.max_tokens = max_inputs, max_tokens or self.model.max_seq_length
        if self.max_tokens > self.model.max_seq_length:  # the model would cut the text where the check let it pass
            raise ValueError(f"max_tokens ({self.max_tokens}) is over the model's max_seq_length "
                             f"({self.model.max_seq_length})")  # fmt: skip
        self.max_request_tokens = max_request_tokens or max_inputs * self.max_tokens
        self.tokenizer_pool = ThreadPoolExecutor(max(1, tokenization_workers), thread_name_prefix="tokenize")
        self._thread = threading.local()
        self.special_wrap = special_token_wrap(self.model.tokenizer)

    def _tokenizer(self):
        """This thread's own copy of the tokenizer (the model's own is used only by the thread that encodes)."""
        if not hasattr(self._thread, "tokenizer"):
            self._thread.tokenizer = copy.deepcopy(self.model.tokenizer)
        return self._thread.tokenizer

    def prompt(self, body: EmbeddingRequest) -> str:
        """The text put before each input: the formatted `instruction`, the model's `prompt_name` prompt, or none."""
        if body.instruction is not None and body.prompt_name is not None:
            raise APIError(400, "pass `instruction` or `prompt_name`, not both", "instruction")
        if body.instruction is not None:
            if not body.instruction.strip():
                raise APIError(400, "`instruction` is empty; omit it for passages", "instruction")
            return INSTRUCTION_TEMPLATE.format(task=body.instruction)
        if body.prompt_name is not None:
            if body.prompt_name not in self.model.prompts:
                raise APIError(400, f"the model has no prompt {body.prompt_name!r}; its prompts are "
                                    f"{sorted(self.model.prompts)}", "prompt_name")  # fmt: skip
            return self.model.prompts[body.prompt_name]
        return ""

    def check_texts(self, texts: list[str]) -> None:
        """What can be refused before tokenizing: no texts, too many, empty ones."""
        if not texts:
            raise APIError(400, "`input` is an empty list", "input")
        if len(texts) > self.max_inputs:
            raise APIError(400, f"`input` has {len(texts)} texts; this server takes at most {self.max_inputs} "
                                "per request", "input")  # fmt: skip
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise APIError(400, f"input[{empty[0]}] is empty (or only whitespace)", "input")

    def check_ids(self, inputs: list[list[int]]) -> None:
        """What can be refused in token-id input: no inputs, too many, empty ones, ids outside the vocabulary."""
        if len(inputs) > self.max_inputs:
            raise APIError(400, f"`input` has {len(inputs)} token lists; this server takes at most "
                                f"{self.max_inputs} per request", "input")  # fmt: skip
        if self.special_wrap is None:
            raise APIError(400, "this model's tokenizer does not add its special tokens around a text in a way the "
                                "server can repeat for token ids; send texts", "input")  # fmt: skip
        vocabulary = len(self.model.tokenizer)
        for i, ids in enumerate(inputs):
            if not ids:
                raise APIError(400, f"input[{i}] is an empty list of token ids", "input")
            bad = next((t for t in ids if not 0 <= t < vocabulary), None)
            if bad is not None:
                raise APIError(400, f"input[{i}] holds the token id {bad}, outside this model's vocabulary "
                                    f"(0 to {vocabulary - 1})", "input")  # fmt: skip

    def tokenize_ids(self, inputs: list[list[int]], prompt: str, truncate: bool = False) -> tuple[list[dict], int]:
        """Features of token-id inputs as `tokenize` would give for their texts: the tokenizer's leading special
        tokens, the prompt's tokens, the ids, its trailing special tokens (`special_token_wrap`); the same limits."""
        tokenizer = self._tokenizer()
        head, tail = self.special_wrap
        head = head + (tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"] if prompt else [])
        room = self.max_tokens - len(head) - len(tail)
        too_long = [i for i, ids in enumerate(inputs) if len(ids) > room]
        if too_long and not truncate:
            i = too_long[0]
            raise APIError(400, f"input[{i}] is {len(inputs[i]) + len(head) + len(tail)} tokens (instruction and "
                                f"special tokens included); this model takes at most {self.max_tokens}. Shorten or "
                                'split it, or pass "truncate": true', "input")  # fmt: skip
        if too_long and room <= 0:
            raise APIError(400, f"the instruction alone is {self.max_tokens} tokens or more; truncating the "
                                "input cannot help", "instruction")  # fmt: skip
        features = []
        for ids in inputs:
            input_ids = head + list(ids[:room]) + tail
            feature = {"input_ids": input_ids, "attention_mask": [1] * len(input_ids)}
            if "token_type_ids" in tokenizer.model_input_names:  # as a BERT-style tokenizer gives one text
                feature["token_type_ids"] = [0] * len(input_ids)
            features.append(feature)
        return features, self.check_request_tokens(features)

    def check_request_tokens(self, features: list[dict]) -> int:
        tokens = sum(len(f["input_ids"]) for f in features)
        if tokens > self.max_request_tokens:
            raise APIError(400, f"the request is {tokens} tokens; this server takes at most "
                                f"{self.max_request_tokens} per request. Send fewer texts per request",
                           "input")  # fmt: skip
        return tokens

    def tokenize(self, texts: list[str], prompt: str, truncate: bool = False) -> tuple[list[dict], int]:
        """Tokenize `prompt + text` for each text (once: the batch embeds these tokens); refuse texts over
        `max_tokens` unless `truncate`, and requests over `max_request_tokens`. Returns each text's features and the
        token count (OpenAI's `usage`). Runs in a tokenization thread."""
        tokenizer = self._tokenizer()
        encoded = tokenizer([prompt + t for t in texts], padding=False, truncation=False, verbose=False)
        too_long = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) > self.max_tokens]
        if too_long and not truncate:
            i = too_long[0]
            raise APIError(400, f"input[{i}] is {len(encoded['input_ids'][i])} tokens (instruction included); this "
                                f"model takes at most {self.max_tokens}. Shorten or split the text, or pass "
                                '"truncate": true', "input")  # fmt: skip
        features = [{key: encoded[key][i] for key in encoded} for i in range(len(texts))]
        if too_long:
            if len(tokenizer(prompt, verbose=False)["input_ids"]) >= self.max_tokens:
                raise APIError(400, f"the instruction alone is {self.max_tokens} tokens or more; truncating the "
                                    "text cannot help", "instruction")  # fmt: skip
            cut = tokenizer([prompt + texts[i] for i in too_long], truncation=True, max_length=self.max_tokens)
            for k, i in enumerate(too_long):
                features[i] = {key: cut[key][k] for key in cut}
        return features, self.check_request_tokens(features)

    def forward(self, items: list[QueuedText]) -> list[np.ndarray]:
        """Embed tokenized texts, one forward pass per distinct prompt; float32 vectors in input order."""
        import torch
        from sentence_transformers.util import batch_to_device

        out: list[np.ndarray | None] = [None] * len(items)
        for prompt in dict.fromkeys(item.prompt for item in items):
            rows = [i for i, item in enumerate(items) if item.prompt == prompt]
            features = dict(self.model.tokenizer.pad([items[i].features for i in rows], return_tensors="pt"))
            features["modality"] = "text"
            if prompt:  # as sentence-transformers passes it: the prompt's tokens are attended to, not pooled
                features["prompt_length"] = self.model[0]._get_prompt_length(prompt)
            with torch.inference_mode():
                vectors = self.model(batch_to_device(features, self.device))["sentence_embedding"]
            for i, v in zip(rows, vectors.float().cpu().numpy()):
                out[i] = v
        return out

    def encode_items(self, items: list[QueuedText]) -> list[np.ndarray | Exception]:
        """`forward`, with failures kept to the request whose texts fail: if the batch fails, each request's texts
        are tried on their own, and a request that fails again gets its exception in place of its vectors."""
        try:
            return self.forward(items)
        except Exception as error:  # noqa: BLE001 - returned to the requests it belongs to
            requests = list(dict.fromkeys(item.request for item in items))
            if len(requests) == 1:
                return [error] * len(items)
            logger.warning("a batch of %d requests failed (%r); retrying them one by one", len(requests), error)
        self._free_memory()
        out: list[np.ndarray | Exception | None] = [None] * len(items)
        for request in requests:
            rows = [i for i, item in enumerate(items) if item.request == request]
            try:
                vectors = self.forward([items[i] for i in rows])
            except Exception as error:  # noqa: BLE001 - this request's own failure
                vectors = [error] * len(rows)
                self._free_memory()
            for i, v in zip(rows, vectors):
                out[i] = v
        return out

    def _free_memory(self) -> None:
        if self.device == "cuda":  # after an out-of-memory error, before the retry
            import torch

            torch.cuda.empty_cache()


class ServerMetrics:
    """This replica's Prometheus metrics (its own registry, so two replicas in one process never collide)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        powers = [2**k for k in range(0, 17)]
        self.requests = Counter("nvembed_requests", "Embedding requests by HTTP status", ["status"],
                                registry=self.registry)  # fmt: skip
        self.texts = Counter("nvembed_texts", "Texts embedded", registry=self.registry)
        self.tokens = Counter("nvembed_tokens", "Tokens embedded (usage.prompt_tokens)", registry=self.registry)
        self.batch_texts = Histogram("nvembed_batch_texts", "Texts per forward pass", buckets=powers[:11],
                                     registry=self.registry)  # fmt: skip
        self.batch_tokens = Histogram("nvembed_batch_tokens", "Padded tokens per forward pass (texts x longest)",
                                      buckets=powers[4:], registry=self.registry)  # fmt: skip
        self.queue = Gauge("nvembed_queue_texts", "Texts waiting for a forward pass", registry=self.registry)
        self.inflight = Gauge("nvembed_requests_in_flight", "Requests being served", registry=self.registry)
        self.latency = Histogram("nvembed_request_seconds", "Embedding request latency (successful requests)",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)  # fmt: skip

    def render(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


app = FastAPI(title="NV-Embed embeddings (OpenAI-compatible)")


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """Unknown routes and methods in OpenAI's format too."""
    kind = "server_error" if error.status_code >= 500 else "invalid_request_error"
    message = f"{request.method} {request.url.path}: {error.detail}"
    return APIError(error.status_code, message, kind=kind).response()


@app.exception_handler(Exception)
async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return server_error(500, f"the server failed on this request ({type(error).__name__}); it is still up").response()


@ray_serve.deployment
@ray_serve.ingress(app)
class NVEmbedServer:
    """One model replica. Options:

    Args:
        model_path (`str`): the SentenceTransformer folder (`convert_to_nvembed.py` makes one).
        model_name (`str`, *optional*): the name clients pass as `model`; default: the folder's name.
        max_batch_size (`int`, *optional*, defaults to 32): texts per forward pass; 1 turns batching off.
        max_batch_tokens (`int`, *optional*, defaults to 16384): padded tokens per forward pass (texts x longest);
            at least `max_tokens`.
        batch_wait_timeout_s (`float`, *optional*, defaults to 0.005): how long a batch waits to fill.
        max_inputs (`int`, *optional*, defaults to 256): texts per request.
        max_tokens (`int`, *optional*): tokens per text, instruction included; default: the model's max_seq_length
            (or `max_batch_tokens` if that is less).
        max_request_tokens (`int`, *optional*): tokens per request; default: `max_inputs * max_tokens`.
        max_request_bytes (`int`, *optional*, defaults to 2 MiB): request body size.
        max_concurrent_requests (`int`, *optional*, defaults to 512): requests in flight in this replica; more get
            429 with `Retry-After`.
        request_timeout_s (`float`, *optional*, defaults to 60): a request not answered by then gets 503.
        health_timeout_s (`float`, *optional*, defaults to 10): /health's forward pass must finish within this.
        api_key_sha256 (`str`, *optional*): SHA-256 (hex) of the bearer key clients must send on /v1/*; None: open.
            The hash, not the key, is what Ray keeps in its deployment arguments.
        threads (`int`, *optional*): torch threads on CPU (default: torch's choice).
        tokenization_workers (`int`, *optional*, defaults to 1): threads that tokenize requests.
    """

    def __init__(
        self,
        model_path: str,
        model_name: str | None = None,
        max_batch_size: int = 32,
        max_batch_tokens: int = 16384,
        batch_wait_timeout_s: float = 0.005,
        max_inputs: int = 256,
        max_tokens: int | None = None,
        max_request_tokens: int | None = None,
        max_request_bytes: int = 2 << 20,
        max_concurrent_requests: int = 512,
        request_timeout_s: float = 60.0,
        health_timeout_s: float = 10.0,
        api_key_sha256: str | None = None,
        threads: int | None = None,
        tokenization_workers: int = 1,
    ):
        counts = dict(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens, max_inputs=max_inputs,
                      max_request_bytes=max_request_bytes,
                      max_concurrent_requests=max_concurrent_requests)  # fmt: skip
        if min(counts.values()) < 1 or batch_wait_timeout_s < 0 or min(request_timeout_s, health_timeout_s) <= 0:
            raise ValueError(f"{counts} must be >= 1, batch_wait_timeout_s >= 0 and the timeouts > 0; got "
                             f"{batch_wait_timeout_s}, {request_timeout_s}, {health_timeout_s}")  # fmt: skip
        self.encoder = NVEmbedEncoder(
            model_path, max_inputs, max_tokens, max_request_tokens, threads, tokenization_workers
        )
        if max_tokens is None and self.encoder.max_tokens > max_batch_tokens:  # a long-context model's default
            logger.info("max_tokens: %d (max_batch_tokens) rather than the model's %d", max_batch_tokens,
                        self.encoder.max_tokens)  # fmt: skip
            self.encoder.max_tokens = max_batch_tokens
        if self.encoder.max_tokens > max_batch_tokens:
            raise ValueError(f"max_batch_tokens ({max_batch_tokens}) is below max_tokens ({self.encoder.max_tokens}): "
                             "a text of max_tokens would fit no batch")  # fmt: skip
        self.model_name = model_name or os.path.basename(os.path.normpath(model_path))
        self.dimensions = self.encoder.dimensions
        self.max_request_bytes, self.max_concurrent_requests = max_request_bytes, max_concurrent_requests
        self.request_timeout_s, self.health_timeout_s = request_timeout_s, health_timeout_s
        self.api_key_sha256 = api_key_sha256
        self.floor = max_batch_tokens / max_batch_size
        self.batcher = BudgetBatcher(self.run_batch, batch_cost, max_batch_tokens, batch_wait_timeout_s)
        self.batch_sizes: list[int] = []  # seen by /health, so tests and benchmarks can tell batching happened
        self.request_ids = itertools.count()
        self.inflight = 0
        self.metrics = ServerMetrics()
        self.health_features = self.encoder.tokenize(["ok"], "")[0][0]
        device = self.encoder.device
        logger.info("serving %s (%d-dim) from %s on %s", self.model_name, self.dimensions, model_path, device)

    @app.get("/health")
    async def health(self) -> JSONResponse:
        """Readiness: one forward pass of a short text through the batch queue, within `health_timeout_s`."""
        try:
            item = QueuedText(self.health_features, "", -1, self.floor)  # request -1: not counted as queued
            vector = await asyncio.wait_for(self.embed_text(item), self.health_timeout_s)
            if isinstance(vector, Exception):
                raise vector
        except TimeoutError:
            return server_error(503, f"not ready: a forward pass took over {self.health_timeout_s} s", "not_ready",
                                **{"Retry-After": "1"}).response()  # fmt: skip
        except Exception as error:  # noqa: BLE001 - unhealthy, said so
            return server_error(503, f"not ready: the forward pass failed ({error!r:.200})", "not_ready").response()
        recent = self.batch_sizes[-1000:]
        return JSONResponse({"status": "ok", "model": self.model_name, "dimensions": self.dimensions,
                             "max_batch_size_seen": max(recent, default=0)})  # fmt: skip

    @app.get("/metrics")
    async def prometheus(self) -> Response:
        return self.metrics.render()

    @app.get("/v1/models")
    async def models(self, request: Request):
        try:
            self.authorize(request)
        except APIError as error:
            return error.response()
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "nvembed"}]}

    @app.post("/v1/embeddings")
    async def embeddings(self, request: Request):
        start, status = time.perf_counter(), 200
        try:
            self.authorize(request)
            if self.inflight >= self.max_concurrent_requests:
                raise APIError(429, f"this server has {self.inflight} requests in flight, its limit; retry shortly",
                               kind="requests", code="rate_limit_exceeded", headers={"Retry-After": "1"})  # fmt: skip
            self.inflight += 1
            self.metrics.inflight.inc()
            try:
                response = await asyncio.wait_for(self.embed_request(request), self.request_timeout_s)
            finally:
                self.inflight -= 1
                self.metrics.inflight.dec()
            self.metrics.latency.observe(time.perf_counter() - start)
            return response
        except APIError as error:
            status = error.status
            return error.response()
        except TimeoutError:
            status = 503
            return server_error(503, f"the request took over {self.request_timeout_s} s; retry it, or send fewer "
                                     "texts per request", "timeout", **{"Retry-After": "1"}).response()  # fmt: skip
        except Exception as error:  # noqa: BLE001 - this request's failure, answered in OpenAI's format
            status = 500
            logger.error("request failed: %r", error, exc_info=error)
            return server_error(500, f"embedding failed ({type(error).__name__}: {str(error)[:200]}); the server "
                                     "is still up").response()  # fmt: skip
        finally:
            self.metrics.requests.labels(str(status)).inc()

    async def embed_request(self, request: Request) -> dict:
        body = await self.parse(request)
        prompt = self.encoder.prompt(body)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if texts and not isinstance(texts[0], str):  # token ids: one list of ints is one input
            texts = [texts] if isinstance(texts[0], int) else texts
            self.encoder.check_ids(texts)
            tokenize = self.encoder.tokenize_ids
        else:
            self.encoder.check_texts(texts)
            tokenize = self.encoder.tokenize
        loop = asyncio.get_running_loop()
        features, tokens = await loop.run_in_executor(
            self.encoder.tokenizer_pool, tokenize, texts, prompt, body.truncate
        )
        request_id = next(self.request_ids)
        items = [QueuedText(f, prompt, request_id, self.floor) for f in features]
        self.metrics.queue.inc(len(items))
        try:
            vectors = await asyncio.gather(*(self.embed_text(item) for item in items))
        finally:  # texts of a timed-out request leave the queue unencoded (Ray Serve drops cancelled ones)
            self.metrics.queue.dec(sum(item.queued for item in items))
            for item in items:
                item.queued = False
        failed = next((v for v in vectors if isinstance(v, Exception)), None)
        if failed is not None:
            raise failed
        self.metrics.texts.inc(len(texts))
        self.metrics.tokens.inc(tokens)
        if body.dimensions is not None and body.dimensions != self.dimensions:
            vectors = [truncate_vector(v, body.dimensions) for v in vectors]
        data = [
            {"object": "embedding", "index": i, "embedding": self.format_vector(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": self.model_name, "usage": usage}

    def authorize(self, request: Request) -> None:
        if self.api_key_sha256 is None:
            return
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise APIError(401, "no API key: send the header `Authorization: Bearer KEY`", code="invalid_api_key")
        if not hmac.compare_digest(hashlib.sha256(key.strip().encode()).hexdigest(), self.api_key_sha256):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")

    async def parse(self, request: Request) -> EmbeddingRequest:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
            raise APIError(413, f"the request body is {declared} bytes; this server takes at most "
                                f"{self.max_request_bytes}")  # fmt: skip
        chunks, size = [], 0
        async for chunk in request.stream():  # a chunked body has no Content-Length: count while it streams in
            size += len(chunk)
            if size > self.max_request_bytes:
                raise APIError(413, f"the request body is over {self.max_request_bytes} bytes, the most this server "
                                    "takes")  # fmt: skip
            chunks.append(chunk)
        try:
            payload = json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(400, f"the body is not valid JSON: {error}") from None
        except RecursionError:
            raise APIError(400, "the body's JSON is nested too deeply") from None
        try:
            body = EmbeddingRequest.model_validate(payload)
        except ValidationError as error:
            first = error.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:5])
            raise APIError(400, f"invalid request: {shown}", param) from None
        if body.model != self.model_name:
            raise APIError(404, f"the model {body.model!r} does not exist; this server serves {self.model_name!r}",
                           "model", code="model_not_found")  # fmt: skip
        allowed = self.encoder.matryoshka_dimensions or [self.dimensions]
        if body.dimensions is not None and body.dimensions not in allowed:
            if len(allowed) == 1:
                raise APIError(400, f"dimensions={body.dimensions} is not supported: this model was not trained "
                                    f"with a Matryoshka loss, so it only gives its full {self.dimensions}-dim vectors "
                                    "(omit `dimensions` or pass that value)", "dimensions")  # fmt: skip
            raise APIError(400, f"dimensions={body.dimensions} is not supported: this model's Matryoshka loss trained "
                                f"the sizes {allowed} (omit `dimensions` for {self.dimensions})",
                           "dimensions")  # fmt: skip
        return body

    def embed_text(self, item: QueuedText) -> asyncio.Future:
        """Queue one text for the next batch; the future gives its vector (or the exception its forward pass got)."""
        return self.batcher.submit(item)

    async def run_batch(self, items: list[QueuedText]) -> list[np.ndarray | Exception]:
        """One batch of texts queued from all requests, run when the model is free (`BudgetBatcher`)."""
        self.batch_sizes.append(len(items))
        del self.batch_sizes[:-1000]
        self.metrics.queue.dec(sum(item.queued for item in items if item.request != -1))
        for item in items:
            item.queued = False
        self.metrics.batch_texts.observe(len(items))
        self.metrics.batch_tokens.observe(len(items) * max(item.tokens for item in items))
        return await asyncio.to_thread(self.encoder.encode_items, items)

    @staticmethod
    def format_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
        if encoding_format == "base64":
            return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        return vector.tolist()


def build_app(
    model_path: str,
    num_replicas: int = 1,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_queued_requests: int | None = None,
    **options,
):
    """The Ray Serve application: `num_replicas` copies of `NVEmbedServer(model_path, **options)`.

    Ray routes at most `max_concurrent_requests` (+8, so the overflow reaches a replica and gets its OpenAI-format
    429) to a replica; when every replica has that many, Ray's router queues the rest, up to `max_queued_requests`
    (default: no limit, as Ray's), past which Ray's proxy answers 503 itself (plain text, not OpenAI's format).
    Requests pass through that queue on their way to a replica, so a limit below the burst size refuses requests that
    a replica would have taken.

    Example:
        >>> from ray import serve  # doctest: +SKIP
        >>> serve.run(build_app("./nvembed", max_batch_tokens=16384))  # doctest: +SKIP
    """
    actor_options = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    concurrent = options.get("max_concurrent_requests", 512)
    deployment = NVEmbedServer.options(
        num_replicas=num_replicas,
        ray_actor_options=actor_options,
        max_ongoing_requests=concurrent + 8,
        max_queued_requests=-1 if max_queued_requests is None else max_queued_requests,
    )
    return deployment.bind(model_path, **options)
