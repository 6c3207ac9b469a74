"""An OpenAI-compatible embedding server for NV-Embed (or any SentenceTransformer folder) on Ray Serve.

    python -m serve ./nvembed [--host 127.0.0.1] [--port 8000] [--address ray://HEAD:10001] [--replicas N]

Endpoints:
    POST /v1/embeddings   the OpenAI API: `input` (a string or a list of strings), `model`, `encoding_format`
                          ("float" or "base64": little-endian float32), `dimensions` (only the model's own: it was
                          not trained with Matryoshka losses, so truncated vectors would be meaningless), `user`;
                          plus `instruction` (a task description, formatted with the model's instruction template,
                          e.g. "Given a question, retrieve passages that answer it") or `prompt_name` (one of the
                          model's prompts, e.g. "query") for queries. Passages get neither.
    GET  /v1/models       the one served model.
    GET  /health          200 once the model is loaded.

Every text of every request goes into one queue; Ray Serve's `@serve.batch` groups up to `max_batch_size` of them
(waiting at most `batch_wait_timeout_s` for a batch to fill) into one forward pass, so concurrent requests share
batches. Bad input gets a 4xx in OpenAI's error format (`{"error": {"message", "type", "param", "code"}}`) and the
server stays up: an empty or too long text, too many inputs, a body over `max_request_bytes`, wrong types, unknown
fields, an unknown model name or prompt.

Example (Python, with the server above running):
    >>> from openai import OpenAI  # doctest: +SKIP
    >>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")  # doctest: +SKIP
    >>> client.embeddings.create(model="nvembed", input=["how do I unpack a .tar.gz file?"],  # doctest: +SKIP
    ...     extra_body={"instruction": "Given a question, retrieve passages that answer it"}).data[0].embedding[:2]
"""

import asyncio
import base64
import copy
import json
import logging
import os
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve as ray_serve

from modeling_nvembed import INSTRUCTION_TEMPLATE


logger = logging.getLogger(__name__)


class EmbeddingRequest(BaseModel):
    """The body of `POST /v1/embeddings` (OpenAI's, token-id inputs aside, plus `instruction` / `prompt_name`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input: str | list[str]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None
    instruction: str | None = None
    prompt_name: str | None = None


class APIError(Exception):
    """A client error, answered as OpenAI answers one."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": None}
        return JSONResponse({"error": error}, status_code=self.status)


class NVEmbedEncoder:
    """The model side of a replica, apart from Ray Serve: checks texts and embeds batches of them.

    Args:
        model_path (`str`): the SentenceTransformer folder.
        max_inputs (`int`, *optional*, defaults to 256): texts per request.
        max_tokens (`int`, *optional*): tokens per text, instruction included; default: the model's max_seq_length.
        threads (`int`, *optional*): torch threads on CPU (default: torch's choice).
    """

    def __init__(
        self, model_path: str, max_inputs: int = 256, max_tokens: int | None = None, threads: int | None = None
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES per replica
        if self.device == "cpu" and threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(model_path, device=self.device, trust_remote_code=True)
        self.dimensions = self.model.get_embedding_dimension()
        self.max_inputs, self.max_tokens = max_inputs, max_tokens or self.model.max_seq_length
        # Requests are counted on the event loop while a batch is encoded in a worker thread, and a fast tokenizer's
        # padding settings are shared state: two threads on one tokenizer break each other's calls ("Unable to
        # create tensor"). Counting gets its own copy.
        self.counting_tokenizer = copy.deepcopy(self.model.tokenizer)

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

    def check_texts(self, texts: list[str], prompt: str) -> int:
        """Reject what the model cannot embed as asked; return the token count (OpenAI's `usage`)."""
        if not texts:
            raise APIError(400, "`input` is an empty list", "input")
        if len(texts) > self.max_inputs:
            raise APIError(400, f"`input` has {len(texts)} texts; this server takes at most {self.max_inputs} "
                                "per request", "input")  # fmt: skip
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise APIError(400, f"input[{empty[0]}] is empty (or only whitespace)", "input")
        counts = [len(ids) for ids in self.counting_tokenizer([prompt + t for t in texts])["input_ids"]]
        too_long = [(i, n) for i, n in enumerate(counts) if n > self.max_tokens]
        if too_long:
            i, n = too_long[0]
            raise APIError(400, f"input[{i}] is {n} tokens (instruction included); this model takes at most "
                                f"{self.max_tokens}. Shorten or split the text", "input")  # fmt: skip
        return sum(counts)

    def encode_items(self, items: list[tuple[str, str]]) -> list[np.ndarray]:
        """Embed (text, prompt) pairs, one forward pass per distinct prompt; float32 vectors in input order."""
        out: list[np.ndarray | None] = [None] * len(items)
        for prompt in dict.fromkeys(p for _, p in items):
            rows = [i for i, (_, p) in enumerate(items) if p == prompt]
            texts = [items[i][0] for i in rows]
            vectors = self.model.encode(texts, prompt=prompt, batch_size=len(texts), show_progress_bar=False)
            for i, v in zip(rows, vectors):
                out[i] = v.astype(np.float32)
        return out


app = FastAPI(title="NV-Embed embeddings (OpenAI-compatible)")


@ray_serve.deployment(max_ongoing_requests=64, max_queued_requests=512)
@ray_serve.ingress(app)
class NVEmbedServer:
    """One model replica. Options:

    Args:
        model_path (`str`): the SentenceTransformer folder (`convert_to_nvembed.py` makes one).
        model_name (`str`, *optional*): the name clients pass as `model`; default: the folder's name.
        max_batch_size (`int`, *optional*, defaults to 32): texts per forward pass; 1 turns batching off.
        batch_wait_timeout_s (`float`, *optional*, defaults to 0.005): how long a batch waits to fill.
        max_inputs (`int`, *optional*, defaults to 256): texts per request.
        max_tokens (`int`, *optional*): tokens per text, instruction included; default: the model's max_seq_length.
        max_request_bytes (`int`, *optional*, defaults to 2 MiB): request body size.
        threads (`int`, *optional*): torch threads on CPU (default: torch's choice).
    """

    def __init__(
        self,
        model_path: str,
        model_name: str | None = None,
        max_batch_size: int = 32,
        batch_wait_timeout_s: float = 0.005,
        max_inputs: int = 256,
        max_tokens: int | None = None,
        max_request_bytes: int = 2 << 20,
        threads: int | None = None,
    ):
        if min(max_batch_size, max_inputs, max_request_bytes) < 1 or batch_wait_timeout_s < 0:
            raise ValueError(
                f"max_batch_size, max_inputs, max_request_bytes must be >= 1 and batch_wait_timeout_s >= 0; got "
                f"{max_batch_size}, {max_inputs}, {max_request_bytes}, {batch_wait_timeout_s}"
            )
        self.encoder = NVEmbedEncoder(model_path, max_inputs=max_inputs, max_tokens=max_tokens, threads=threads)
        self.model_name = model_name or os.path.basename(os.path.normpath(model_path))
        self.dimensions = self.encoder.dimensions
        self.max_request_bytes = max_request_bytes
        self.embed_text.set_max_batch_size(max_batch_size)
        self.embed_text.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.batch_sizes: list[int] = []  # seen by /health, so tests and benchmarks can tell batching happened
        device = self.encoder.device
        logger.info("serving %s (%d-dim) from %s on %s", self.model_name, self.dimensions, model_path, device)

    @app.get("/health")
    async def health(self) -> dict:
        recent = self.batch_sizes[-1000:]
        return {
            "status": "ok",
            "model": self.model_name,
            "dimensions": self.dimensions,
            "max_batch_size_seen": max(recent, default=0),
        }

    @app.get("/v1/models")
    async def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "nvembed"}]}

    @app.post("/v1/embeddings")
    async def embeddings(self, request: Request):
        try:
            body = await self.parse(request)
            prompt = self.encoder.prompt(body)
            texts = [body.input] if isinstance(body.input, str) else body.input
            tokens = self.encoder.check_texts(texts, prompt)
            vectors = await asyncio.gather(*(self.embed_text((text, prompt)) for text in texts))
        except APIError as error:
            return error.response()
        data = [
            {"object": "embedding", "index": i, "embedding": self.format_vector(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": self.model_name, "usage": usage}

    async def parse(self, request: Request) -> EmbeddingRequest:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
            raise APIError(413, f"the request body is {declared} bytes; this server takes at most "
                                f"{self.max_request_bytes}")  # fmt: skip
        raw = await request.body()
        if len(raw) > self.max_request_bytes:
            raise APIError(413, f"the request body is over {self.max_request_bytes} bytes")
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(400, f"the body is not valid JSON: {error}") from None
        try:
            body = EmbeddingRequest.model_validate(payload)
        except ValidationError as error:
            first = error.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:5])
            raise APIError(400, f"invalid request: {shown}", param) from None
        if body.model != self.model_name:
            raise APIError(404, f"the model {body.model!r} does not exist; this server serves {self.model_name!r}",
                           "model", "model_not_found")  # fmt: skip
        if body.dimensions is not None and body.dimensions != self.dimensions:
            raise APIError(400, f"dimensions={body.dimensions} is not supported: this model was not trained with a "
                                f"Matryoshka loss, so it only gives its full {self.dimensions}-dim vectors (omit "
                                "`dimensions` or pass that value)", "dimensions")  # fmt: skip
        return body

    @ray_serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def embed_text(self, items: list[tuple[str, str]]) -> list[np.ndarray]:
        """One forward pass per prompt over the texts queued from all requests (the batch is set up in __init__)."""
        self.batch_sizes.append(len(items))
        del self.batch_sizes[:-1000]
        return await asyncio.to_thread(self.encoder.encode_items, items)

    @staticmethod
    def format_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
        if encoding_format == "base64":
            return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        return vector.tolist()


def build_app(model_path: str, num_replicas: int = 1, num_cpus: float = 1, num_gpus: float = 0, **options):
    """The Ray Serve application: `num_replicas` copies of `NVEmbedServer(model_path, **options)`.

    Example:
        >>> from ray import serve  # doctest: +SKIP
        >>> serve.run(build_app("./nvembed", max_batch_size=32))  # doctest: +SKIP
    """
    actor_options = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    deployment = NVEmbedServer.options(num_replicas=num_replicas, ray_actor_options=actor_options)
    return deployment.bind(model_path, **options)
