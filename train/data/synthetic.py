"""Synthetic queries for real passages, written by a local instruct LLM (NV-Embed paper: synthetic data for variety).

An instruct LLM (default: the bundled SmolLM2-135M-Instruct GGUF, ``nvembed_defaults.default_backbone_path()``) reads
each passage of a task (Debian long descriptions, docstring bodies, ...) and writes one search query for it, through
the tokenizer's chat template with greedy decoding and a few new tokens. The raw generations are cached with
``save_to_disk`` under ``<cache_dir>/synthetic/<task>-<key>``; the key hashes the model, the prompt, the generation
settings and the passages, so any change regenerates and nothing stale is reused.

Small models write many bad queries, so a filter (``QueryFilter``) runs on every load and drops, with a reason:

=========== =================================================================================================
reason      dropped when
=========== =================================================================================================
empty       nothing is left after cleaning
too_short   fewer than ``min_words`` words or ``min_chars`` characters
too_long    more than ``max_words`` words or ``max_chars`` characters
garbage     control or special-token characters, few letters, a very long "word", or repeated words
echo        it repeats the prompt (instruction phrases, "here is", a few-shot query) instead of answering it,
            or points at the passage ("this package") instead of naming its subject
copy        it is (nearly) a span of the passage: a long substring, or most of its word trigrams occur there
round_trip  (only with a scorer) its own passage is not in the scorer's top-k among all passages of the run
=========== =================================================================================================

The kept rows form a retrieval source (``id``, ``query``, ``passage``); ``synthetic_pairs`` turns them into training
rows (``anchor``, ``positive``, ``task`` = ``synthetic_<task>``) like ``train.data.training_pairs``, to be used
with ``SYNTHETIC_INSTRUCTION``. A run config lists them as a task through a ``datasets:`` entry::

    datasets:
      synthetic_debian: {source: synthetic, passages: debian_description, limit: 5000}
    stages:
      - tasks: [debian_description, synthetic_debian]

Example:
    >>> from train.data.synthetic import synthesize
    >>> result = synthesize("debian_description", limit=50)  # doctest: +SKIP
    >>> result.kept.column_names, result.dropped.column_names  # doctest: +SKIP
    (['id', 'query', 'passage'], ['id', 'query', 'passage', 'reason'])

Command line::

    python -m train.data.synthetic --task debian_description --limit 50 [--model PATH_OR_GGUF] [--round-trip]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets

from .tasks import KIND_FEATURES, default_cache_dir, get_task, load_source


logger = logging.getLogger(__name__)

GENERATOR_VERSION = "2"  # part of the cache key: bump when generate_queries changes its output
SYNTHETIC_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
REASONS = ("empty", "too_short", "too_long", "garbage", "echo", "copy", "round_trip")
# Phrases of a model that talks about the task instead of doing it.
ECHO_MARKERS = (
    "search query",
    "the passage",
    "this passage",
    "passage:",
    "the text above",
    "the above text",
    "here is",
    "here's",
    "sure,",
    "sure!",
    "as an ai",
    "i'm sorry",
    "i cannot",
    "i can't",
    "reply with",
    "write a",
    # A query must stand alone; these point at the unseen passage instead of naming its subject.
    "this package",
    "this library",
    "this module",
    "this program",
    "this tool",
)
SPECIAL_TOKEN_PATTERN = re.compile(r"<\|[^|>]*\|>|</?s>|<unk>|\[INST\]|\[/INST\]")
LABEL_PREFIX_PATTERN = re.compile(r"^\s*(?:(?:search\s+)?query|question|answer)\s*[:\-]\s*", re.IGNORECASE)
WORD_PATTERN = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return WORD_PATTERN.findall(text.casefold())


def _trigrams(words: Sequence[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def clean_query(text: str) -> str:
    """Returns the first non-empty line of a generation without a "Query:" label, quotes or markdown emphasis.

    Example:
        >>> clean_query('Query: "how to compress files with gzip"\\nMore text')
        'how to compress files with gzip'
    """
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = LABEL_PREFIX_PATTERN.sub("", line.strip())
    return line.strip().strip("\"'`*“”‘’ ").strip()


@dataclass
class QueryFilter:
    """Rules that drop bad synthetic queries; ``reason`` returns why a query is dropped, or ``None`` to keep it.

    Args:
        min_words (`int`, *optional*, defaults to 2): Fewer words is "too_short".
        min_chars (`int`, *optional*, defaults to 8): Fewer characters is "too_short".
        max_words (`int`, *optional*, defaults to 24): More words is "too_long" (a query, not a summary).
        max_chars (`int`, *optional*, defaults to 200): More characters is "too_long".
        min_letter_ratio (`float`, *optional*, defaults to 0.6): Fewer letters among non-space characters is
            "garbage".
        max_word_chars (`int`, *optional*, defaults to 30): A longer word (run of non-space characters) is "garbage".
        min_unique_word_ratio (`float`, *optional*, defaults to 0.5): Distinct words / words below this (on 4+ words)
            is "garbage", the loop of a degenerate model.
        copy_min_words (`int`, *optional*, defaults to 6): A query of at least this many words that occurs verbatim
            (after normalization) in the passage is a "copy".
        max_copy_overlap (`float`, *optional*, defaults to 0.6): A larger share of the query's word trigrams found in
            the passage is a "copy"; a larger share found in the prompt is an "echo".
        echo_markers (`tuple[str, ...]`, *optional*, defaults to ``ECHO_MARKERS``): Lower-case phrases that mark an
            "echo".
    """

    min_words: int = 2
    min_chars: int = 8
    max_words: int = 24
    max_chars: int = 200
    min_letter_ratio: float = 0.6
    max_word_chars: int = 30
    min_unique_word_ratio: float = 0.5
    copy_min_words: int = 6
    max_copy_overlap: float = 0.6
    echo_markers: tuple[str, ...] = ECHO_MARKERS

    def __post_init__(self):
        if not 0 < self.min_words <= self.max_words or not 0 < self.min_chars <= self.max_chars:
            raise ValueError(
                f"Need 0 < min <= max: words {self.min_words}..{self.max_words}, "
                f"chars {self.min_chars}..{self.max_chars}"
            )
        for name in ("min_letter_ratio", "min_unique_word_ratio", "max_copy_overlap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def _is_garbage(self, query: str, words: list[str]) -> bool:
        if SPECIAL_TOKEN_PATTERN.search(query) or "\ufffd" in query:
            return True
        if any(unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs") for char in query):
            return True
        visible = [char for char in query if not char.isspace()]
        if sum(char.isalpha() for char in visible) < self.min_letter_ratio * len(visible):
            return True
        if any(len(token) > self.max_word_chars for token in query.split()):
            return True
        return len(words) >= 4 and len(set(words)) < self.min_unique_word_ratio * len(words)

    def _overlap(self, words: list[str], other: str) -> float:
        trigrams = _trigrams(words)
        return len(trigrams & _trigrams(_words(other))) / len(trigrams) if trigrams else 0.0

    def reason(self, query: str, passage: str, prompt: str = "") -> str | None:
        """Returns the first rule ``query`` breaks (see the module docstring), or ``None`` if it is kept.

        Args:
            query: The cleaned query.
            passage: The passage it was written for.
            prompt: The instruction text shown to the model (system + user template), to catch echoes of it.

        Example:
            >>> f = QueryFilter()
            >>> f.reason("how to compress files with gzip", "GNU gzip reduces the size of files.") is None
            True
            >>> f.reason("gzip", "GNU gzip reduces the size of files.")
            'too_short'
        """
        words = _words(query)
        if not query.strip():
            return "empty"
        if len(words) < self.min_words or len(query) < self.min_chars:
            return "too_short"
        if len(words) > self.max_words or len(query) > self.max_chars:
            return "too_long"
        if self._is_garbage(query, words):
            return "garbage"
        lowered = " ".join(query.casefold().split())
        if any(re.search(rf"(?<!\w){re.escape(marker)}(?!\w)", lowered) for marker in self.echo_markers):
            return "echo"
        if self._overlap(words, prompt) > self.max_copy_overlap:
            return "echo"
        if len(words) >= self.copy_min_words and " ".join(words) in " ".join(_words(passage)):
            return "copy"
        if self._overlap(words, passage) > self.max_copy_overlap:
            return "copy"
        return None


@dataclass
class QueryGenerationConfig:
    """What the LLM is asked and how it decodes; every field is part of the cache key.

    Args:
        system (`str`): System message (replaces the template's default persona).
        prompt (`str`): User message; ``{passage}`` is replaced by the (truncated) passage.
        examples (`list[tuple[str, str]]`): Few-shot (passage, query) turns shown before the real passage; small
            models copy the passage much less often with one example.
        max_new_tokens (`int`, *optional*, defaults to 24): Generation budget; a query is short.
        temperature (`float`, *optional*, defaults to 0.0): 0 is greedy decoding; above 0 samples with ``seed``.
        seed (`int`, *optional*, defaults to 0): Sampling seed.
        batch_size (`int`, *optional*, defaults to 8): Passages per ``generate`` call (left padding).
        max_passage_chars (`int`, *optional*, defaults to 600): Passages are cut to this many characters (at a word
            boundary) to bound prompt length.
    """

    system: str = "You write short web search queries."
    prompt: str = "Write a search query for this passage.\n\nPassage:\n{passage}"
    examples: list[tuple[str, str]] = field(
        default_factory=lambda: [
            (
                "GNU gzip reduces the size of files using Lempel-Ziv coding (LZ77). Whenever possible, each file is "
                "replaced by one with the extension .gz, while keeping the same ownership modes, access and "
                "modification times.",
                "how to compress files with gzip",
            ),
            (
                "Vim is an almost compatible version of the UNIX editor Vi. Many new features have been added: multi "
                "level undo, syntax highlighting, command line history, on-line help, filename completion, block "
                "operations, folding, Unicode support, etc.",
                "vi compatible text editor with syntax highlighting",
            ),
        ]
    )
    max_new_tokens: int = 24
    temperature: float = 0.0
    seed: int = 0
    batch_size: int = 8
    max_passage_chars: int = 600

    def __post_init__(self):
        if "{passage}" not in self.prompt:
            raise ValueError(f"prompt must contain '{{passage}}', got {self.prompt!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.temperature < 0:
            raise ValueError(
                f"Need max_new_tokens >= 1, batch_size >= 1, temperature >= 0; got {self.max_new_tokens}, "
                f"{self.batch_size}, {self.temperature}"
            )

    def instruction_text(self) -> str:
        """The instruction words and few-shot queries the model sees (no passages), used to detect echoes."""
        return "\n".join([self.system, self.prompt.replace("{passage}", ""), *(query for _, query in self.examples)])

    def messages(self, passage: str) -> list[dict[str, str]]:
        turns = [{"role": "system", "content": self.system}] if self.system else []
        for example_passage, example_query in self.examples:
            turns.append({"role": "user", "content": self.prompt.format(passage=example_passage)})
            turns.append({"role": "assistant", "content": example_query})
        passage = truncate(passage, self.max_passage_chars)
        turns.append({"role": "user", "content": self.prompt.format(passage=passage)})
        return turns


def truncate(text: str, max_chars: int) -> str:
    """Cuts ``text`` to at most ``max_chars`` characters at a word boundary."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def _render(tokenizer, messages: list[dict[str, str]]) -> str:
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Base models without a chat template: plain transcript ending where the query should start.
    lines = [f"{turn['content']}\nQuery:" if turn["role"] == "user" else turn["content"] for turn in messages]
    return "\n\n".join(lines) + " "


def _resolve_model(model: str | Path | None) -> tuple[Path, str]:
    """Returns the model path (default: the bundled SmolLM2 GGUF) and its id: the path plus its weight file sizes."""
    if model is None:
        from nvembed_defaults import default_backbone_path

        model = default_backbone_path()
    path = Path(model).expanduser().resolve()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{path}: a model file must be .gguf; else pass the model folder")
        sizes = [path.stat().st_size]
    elif path.is_dir():
        sizes = [f.stat().st_size for f in sorted(path.iterdir()) if f.suffix in (".safetensors", ".bin", ".json")]
    else:
        raise FileNotFoundError(f"No model at {path}")
    return path, f"{path}:{sizes}"


def load_generator(model: str | Path | None = None):
    """Loads an instruct LLM and its tokenizer from a folder or a ``.gguf`` file (default: the bundled SmolLM2).

    Returns:
        ``(model, tokenizer, model_id)``; ``model_id`` (resolved path and weight sizes) is part of the cache key.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, model_id = _resolve_model(model)
    kwargs, folder = ({"gguf_file": path.name}, path.parent) if path.is_file() else ({}, path)
    logger.info("loading query writer %s", path)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    llm = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs).eval()
    return llm, tokenizer, model_id


def generate_queries(passages: Sequence[str], model, tokenizer, config: QueryGenerationConfig) -> list[str]:
    """Returns the raw generation (decoded new tokens, special tokens skipped) for each passage."""
    import torch

    prompts = [_render(tokenizer, config.messages(passage)) for passage in passages]
    add_special_tokens = not tokenizer.chat_template  # a chat template writes its own BOS
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Stop at the chat turn's end (<|im_end|>) too: GGUF generation configs may only list <|endoftext|>.
    eos_ids = model.generation_config.eos_token_id
    eos_ids = {tokenizer.eos_token_id, *(eos_ids if isinstance(eos_ids, list) else [eos_ids])} - {None}
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues at the right end
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    sampling = {"do_sample": False}
    if config.temperature > 0:
        sampling = {"do_sample": True, "temperature": config.temperature}
        torch.manual_seed(config.seed)
    outputs = []
    try:
        for start in range(0, len(prompts), config.batch_size):
            batch = tokenizer(
                prompts[start : start + config.batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=add_special_tokens,
            )
            with torch.no_grad():
                generated = model.generate(
                    **batch,
                    max_new_tokens=config.max_new_tokens,
                    pad_token_id=pad_token_id,
                    eos_token_id=sorted(eos_ids),
                    **sampling,
                )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]  # (B, new)
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
            logger.info("generated %d/%d queries", len(outputs), len(prompts))
    finally:
        tokenizer.padding_side = padding_side
    return outputs


def _cache_key(model_id: str, config: QueryGenerationConfig, ids: Sequence[str], passages: Sequence[str]) -> str:
    header = {"model": model_id, "config": asdict(config), "version": GENERATOR_VERSION}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for row_id, passage in zip(ids, passages):
        digest.update(f"\0{row_id}\0{passage}".encode())
    return digest.hexdigest()[:16]


def generate_cached(
    ids: Sequence[str],
    passages: Sequence[str],
    *,
    name: str,
    model: str | Path | None = None,
    config: QueryGenerationConfig | None = None,
    cache_dir: str | Path | None = None,
    rebuild: bool = False,
) -> datasets.Dataset:
    """Generates one raw query per passage, or loads them from the cache.

    Args:
        ids: Row ids, one per passage.
        passages: Passages to write queries for.
        name: Cache folder prefix (the task name).
        model: A model folder or ``.gguf`` file; defaults to the bundled SmolLM2-135M-Instruct.
        config: Prompt and decoding settings.
        cache_dir: Root cache folder; defaults to ``default_cache_dir()``.
        rebuild: Generate again even if cached.

    Returns:
        A ``datasets.Dataset`` with columns ``id``, ``passage``, ``raw`` (the generation) and ``query`` (cleaned).
    """
    if len(ids) != len(passages):
        raise ValueError(f"{len(ids)} ids but {len(passages)} passages")
    config = config or QueryGenerationConfig()
    path, model_id = _resolve_model(model)  # identifies the model without loading it (~30 s for the GGUF)
    key = _cache_key(model_id, config, ids, passages)
    target = Path(cache_dir or default_cache_dir()) / "synthetic" / f"{name}-{key}"
    if (target / "state.json").exists() and not rebuild:
        logger.info("loading synthetic queries from cache %s", target)
        return datasets.load_from_disk(str(target))
    llm, tokenizer, _ = load_generator(path)
    raw = generate_queries(passages, llm, tokenizer, config)
    data = datasets.Dataset.from_dict(
        {"id": list(ids), "passage": list(passages), "raw": raw, "query": [clean_query(text) for text in raw]}
    )
    staging = target.with_name(f"{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    data.save_to_disk(str(staging))
    (staging / "nvembed_synthetic.json").write_text(
        json.dumps({"model": str(path), "config": asdict(config), "num_rows": len(data)}, indent=2)
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return datasets.load_from_disk(str(target))


def round_trip_ranks(queries: Sequence[str], passages: Sequence[str], candidates: Sequence[str], scorer) -> list[int]:
    """Returns, per query, the 0-based rank of its own passage among ``candidates`` by the scorer's cosine score.

    Args:
        queries: Queries.
        passages: The passage each query was written for; each must be in ``candidates``.
        candidates: All passages of the run (the query's competitors).
        scorer: A ``SentenceTransformer`` (e.g. the bundled MiniLM, ``nvembed_defaults.peer_model_path()``).
    """
    position = {passage: i for i, passage in enumerate(candidates)}
    query_embeddings = scorer.encode(list(queries), convert_to_tensor=True, normalize_embeddings=True)
    passage_embeddings = scorer.encode(list(candidates), convert_to_tensor=True, normalize_embeddings=True)
    scores = query_embeddings @ passage_embeddings.T  # (Q, C)
    own = scores[range(len(queries)), [position[passage] for passage in passages]]  # (Q,)
    return (scores > own[:, None]).sum(dim=1).tolist()


@dataclass
class SyntheticQueries:
    """Result of ``synthesize``.

    Args:
        kept (`datasets.Dataset`): Retrieval rows ``id``, ``query``, ``passage`` that passed every rule.
        dropped (`datasets.Dataset`): ``id``, ``query``, ``passage``, ``reason`` of the others.
    """

    kept: datasets.Dataset
    dropped: datasets.Dataset

    def counts(self) -> dict[str, int]:
        """Kept count and dropped count per reason."""
        return {"kept": len(self.kept), **Counter(self.dropped["reason"])}


def filter_queries(
    raw: datasets.Dataset,
    *,
    prompt: str = "",
    scorer=None,
    top_k: int = 3,
) -> SyntheticQueries:
    """Splits generated rows (``id``, ``passage``, ``query``) into kept and dropped ones.

    Args:
        raw: Output of ``generate_cached``.
        prompt: Instruction text shown to the model (``QueryGenerationConfig.instruction_text()``).
        scorer: Optional ``SentenceTransformer`` or model path for the round-trip rule.
        top_k: With a scorer, keep a query only if its passage ranks in the top ``top_k`` of all passages in ``raw``.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    query_filter = QueryFilter()
    reasons = [query_filter.reason(q, p, prompt) for q, p in zip(raw["query"], raw["passage"])]
    if scorer is not None:
        if isinstance(scorer, (str, Path)):
            from sentence_transformers import SentenceTransformer

            scorer = SentenceTransformer(str(scorer), device="cpu")
        survivors = [i for i, reason in enumerate(reasons) if reason is None]
        if survivors:
            ranks = round_trip_ranks(
                [raw["query"][i] for i in survivors], [raw["passage"][i] for i in survivors], raw["passage"], scorer
            )
            for i, rank in zip(survivors, ranks):
                reasons[i] = "round_trip" if rank >= top_k else None
    keep = [i for i, reason in enumerate(reasons) if reason is None]
    drop = [i for i, reason in enumerate(reasons) if reason is not None]
    kept = datasets.Dataset.from_dict(
        {column: [raw[column][i] for i in keep] for column in KIND_FEATURES["retrieval"]},
        features=KIND_FEATURES["retrieval"],
    )
    dropped = datasets.Dataset.from_dict(
        {
            **{column: [raw[column][i] for i in drop] for column in KIND_FEATURES["retrieval"]},
            "reason": [reasons[i] for i in drop],
        }
    )
    logger.info("kept %d of %d synthetic queries", len(kept), len(raw))
    return SyntheticQueries(kept, dropped)


def task_passages(task: str, split: str = "train", limit: int | None = None, cache_dir=None) -> tuple[list, list]:
    """Returns ``(ids, passages)`` of a task: retrieval passages, or classification/clustering texts."""
    spec = get_task(task)
    if spec.kind not in ("retrieval", "classification", "clustering"):
        raise ValueError(
            f"Task {task!r} is {spec.kind}; synthetic queries need retrieval, classification or clustering"
        )
    data = load_source(task, cache_dir)[split]
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    if spec.kind == "retrieval":
        return list(data["id"]), list(data["passage"])
    return [f"{task}:{split}:{i}" for i in range(len(data))], list(data["text"])


def synthesize(
    task: str,
    *,
    split: str = "train",
    limit: int | None = 50,
    model: str | Path | None = None,
    config: QueryGenerationConfig | None = None,
    scorer=None,
    top_k: int = 3,
    cache_dir: str | Path | None = None,
    rebuild: bool = False,
) -> SyntheticQueries:
    """Writes (or loads cached) synthetic queries for a task's passages and filters them.

    Args:
        task: Task name whose passages are used (``train.data.TASKS``).
        split: Split of the task.
        limit: Number of passages (the first ones of the split, a deterministic sample); ``None`` for all.
        model: LLM folder or ``.gguf`` file; defaults to the bundled SmolLM2-135M-Instruct.
        config: Prompt and decoding settings.
        scorer: Optional ``SentenceTransformer`` or path for the round-trip rule.
        top_k: Round-trip rank cut-off.
        cache_dir: Cache root for the task and the generations.
        rebuild: Generate again even if cached.

    Returns:
        ``SyntheticQueries`` with ``kept`` (retrieval rows) and ``dropped`` (with reasons).

    Example:
        >>> result = synthesize("pydoc_summary", limit=20)  # doctest: +SKIP
        >>> result.counts()  # doctest: +SKIP
        {'kept': 9, 'copy': 6, 'echo': 3, 'too_long': 2}
    """
    config = config or QueryGenerationConfig()
    ids, passages = task_passages(task, split, limit, cache_dir)
    raw = generate_cached(
        ids, passages, name=f"{task}-{split}", model=model, config=config, cache_dir=cache_dir, rebuild=rebuild
    )
    return filter_queries(raw, prompt=config.instruction_text(), scorer=scorer, top_k=top_k)


def synthetic_pairs(task: str, **kwargs) -> datasets.Dataset:
    """Returns the kept synthetic queries of ``task`` as training rows ``anchor``, ``positive``, ``task``.

    ``task`` holds ``synthetic_<task>``; the rows go with ``SYNTHETIC_INSTRUCTION``. Keyword arguments are passed to
    ``synthesize``.
    """
    kept = synthesize(task, **kwargs).kept
    return datasets.Dataset.from_dict(
        {"anchor": kept["query"], "positive": kept["passage"], "task": [f"synthetic_{task}"] * len(kept)}
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.data.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, help="task whose passages get queries, e.g. debian_description")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=50, help="number of passages")
    parser.add_argument("--model", default=None, help="LLM folder or .gguf file (default: bundled SmolLM2)")
    parser.add_argument("--max-new-tokens", type=int, default=QueryGenerationConfig.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=QueryGenerationConfig.temperature)
    parser.add_argument("--round-trip", action="store_true", help="also drop queries the bundled MiniLM can't match")
    parser.add_argument("--top-k", type=int, default=3, help="round-trip rank cut-off")
    parser.add_argument("--cache-dir", default=None, help=f"default: $NVEMBED_DATA_DIR or {default_cache_dir()}")
    parser.add_argument("--rebuild", action="store_true", help="generate again even if cached")
    parser.add_argument("--show", type=int, default=5, help="examples to print per outcome")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    datasets.disable_progress_bars()
    scorer = None
    if args.round_trip:
        from nvembed_defaults import peer_model_path

        scorer = peer_model_path()
    config = QueryGenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    result = synthesize(
        args.task,
        split=args.split,
        limit=args.limit,
        model=args.model,
        config=config,
        scorer=scorer,
        top_k=args.top_k,
        cache_dir=args.cache_dir,
        rebuild=args.rebuild,
    )
    counts = result.counts()
    print("kept", counts.pop("kept"), "dropped", sum(counts.values()), dict(sorted(counts.items())))
    for title, rows in (("kept", result.kept), ("dropped", result.dropped)):
        for row in rows.select(range(min(args.show, len(rows)))):
            passage = " ".join(row["passage"].split())[:80]
            print(f"[{row.get('reason', title)}] {passage}... -> {row['query']!r}")


if __name__ == "__main__":
    main()
