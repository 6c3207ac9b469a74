"""Render the Hub model card (README.md) of an NV-Embed folder from the repository's `model_card.md` template.

The metadata goes through huggingface_hub's `ModelCardData` (so the YAML header is what the Hub parses: library,
pipeline tag, tags, base model, license, language, datasets, the sentence-similarity `widget` and the `model-index`
built from `EvalResult`s); the body is the Jinja template rendered by `ModelCard.from_template`.

Optional inputs are read from the model folder when not passed: `instructions.json` ({task: {"kind", "instruction"}}),
`eval_results.json` and `training_config.json`.

Example:
    >>> from publish.card import render_card
    >>> card = render_card("artifacts/nvembed", base_model="HuggingFaceTB/SmolLM2-135M-Instruct")  # doctest: +SKIP
    >>> card.data.pipeline_tag  # doctest: +SKIP
    'sentence-similarity'
"""

import ast
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData


logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "model_card.md"
# "text-embeddings-inference" is deliberately absent: TEI cannot run this architecture (remote code).
TAGS = ["nvembed", "sentence-transformers", "feature-extraction", "sentence-similarity", "custom_code"]
INSTRUCTIONS_FILE = "instructions.json"
EVAL_RESULTS_FILE = "eval_results.json"
TRAINING_CONFIG_FILE = "training_config.json"
# instructions.json "kind" -> MTEB task type, as MTEB writes it in a model-index.
KIND_TO_TASK_TYPE = {
    "retrieval": "Retrieval",
    "classification": "Classification",
    "clustering": "Clustering",
    "sts": "STS",
    "reranking": "Reranking",
    "pair_classification": "PairClassification",
}
DEFAULT_WIDGET_QUERY = "how do I compress a file on the command line?"
DEFAULT_WIDGET_PASSAGES = [
    "gzip compresses files with the deflate algorithm",
    "the quick brown fox jumps over the lazy dog",
    "network time protocol daemon keeps clocks in sync",
]
CITATION = """@inproceedings{lee2025nvembed,
  title     = {{NV-Embed}: Improved Techniques for Training {LLMs} as Generalist Embedding Models},
  author    = {Lee, Chankyu and Roy, Rajarshi and Xu, Mengyao and Raiman, Jonathan and Shoeybi, Mohammad and
               Catanzaro, Bryan and Ping, Wei},
  booktitle = {The Thirteenth International Conference on Learning Representations (ICLR)},
  year      = {2025},
  url       = {https://arxiv.org/abs/2405.17428}
}"""


def read_json(path: Path) -> Any | None:
    """The parsed file, or `None` when it does not exist. Malformed JSON raises `ValueError` naming the file."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def load_instructions(model_dir: str | Path) -> dict[str, dict[str, str]]:
    """`instructions.json` of the folder ({task: {"kind", "instruction"}}), or {} when absent."""
    path = Path(model_dir) / INSTRUCTIONS_FILE
    instructions = read_json(path) or {}
    if not isinstance(instructions, dict):
        raise ValueError(
            f"{path} must map task names to {{'kind', 'instruction'}}, got {type(instructions).__name__}."
        )
    for task, entry in instructions.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("instruction"), str):
            raise ValueError(f"{path}: task {task!r} needs an 'instruction' string, got {entry!r}.")
    return instructions


def to_eval_results(
    eval_results: Sequence[EvalResult | Mapping] | Mapping | None, instructions: Mapping[str, Mapping] | None = None
) -> list[EvalResult]:
    """Normalize the accepted eval-result shapes into `EvalResult`s.

    Accepted:
        - a list of `EvalResult`, or of dicts with `EvalResult`'s field names;
        - a dict {task: score} (as `eval.run.evaluate` returns: the mteb main score), the task type taken from
          `instructions[task]["kind"]`;
        - a dict {task: {"metric_type", "metric_value", ...}} (any `EvalResult` field; `value`/`metric` also accepted).
    """
    if eval_results is None:
        return []
    instructions = instructions or {}
    results = []
    if isinstance(eval_results, Mapping):
        for task, entry in eval_results.items():
            kind = instructions.get(task, {}).get("kind", "")
            base = {
                "task_type": KIND_TO_TASK_TYPE.get(kind, kind or "feature-extraction"),
                "dataset_type": task,
                "dataset_name": task,
                "metric_type": "main_score",
                "dataset_split": "test",
            }
            if isinstance(entry, Mapping):
                entry = dict(entry)
                if "value" in entry:
                    entry["metric_value"] = entry.pop("value")
                if "metric" in entry:
                    entry["metric_type"] = entry.pop("metric")
                results.append(_eval_result({**base, **entry}, task))
            else:
                results.append(_eval_result({**base, "metric_value": entry}, task))
        return results
    for i, entry in enumerate(eval_results):
        results.append(entry if isinstance(entry, EvalResult) else _eval_result(dict(entry), f"eval_results[{i}]"))
    return results


def _eval_result(fields: dict, where: str) -> EvalResult:
    try:
        return EvalResult(**fields)
    except TypeError as e:
        raise ValueError(f"Bad eval result for {where}: {e}. Fields given: {sorted(fields)}") from e


def instruction_template(model_dir: Path) -> str:
    """`INSTRUCTION_TEMPLATE` of the folder's own modeling_nvembed.py, read without importing it (no torch here)."""
    for path in (model_dir / "modeling_nvembed.py", Path(__file__).resolve().parents[1] / "modeling_nvembed.py"):
        if path.is_file():
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Assign) and any(
                    getattr(t, "id", None) == "INSTRUCTION_TEMPLATE" for t in node.targets
                ):
                    return ast.literal_eval(node.value)
    raise ValueError(f"No INSTRUCTION_TEMPLATE in {model_dir / 'modeling_nvembed.py'}.")


def supported_versions(model_dir: Path) -> dict[str, str]:
    """The version ranges the folder's own configuration_nvembed.py supports (and checks when it loads), read without
    importing it: {"transformers": ">=4.42,<6.0", "sentence_transformers": ">=4.0,<7.0"}."""
    path = model_dir / "configuration_nvembed.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the folder has no model code to state supported versions for.")
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if getattr(target, "id", None) in ("SUPPORTED_TRANSFORMERS", "SUPPORTED_SENTENCE_TRANSFORMERS"):
                    (lo_major, lo_minor), (hi_major, hi_minor) = ast.literal_eval(node.value)
                    found[target.id] = f">={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"
    missing = {"SUPPORTED_TRANSFORMERS", "SUPPORTED_SENTENCE_TRANSFORMERS"} - set(found)
    if missing:
        raise ValueError(
            f"{path} defines no {sorted(missing)}: it predates the version check; re-save the folder with "
            "convert_to_nvembed.save_nvembed_folder."
        )
    return {
        "transformers": found["SUPPORTED_TRANSFORMERS"],
        "sentence_transformers": found["SUPPORTED_SENTENCE_TRANSFORMERS"],
    }


def widget_examples(
    instructions: Mapping[str, Mapping],
    query_prompt: str,
    template: str,
    query: str | None = None,
    passages: Sequence[str] | None = None,
) -> list[dict]:
    """One sentence-similarity widget example: the Hub widget applies no prompt, so the query carries it."""
    task_prompt = query_prompt
    for entry in instructions.values():
        if entry.get("kind", "retrieval") == "retrieval":
            task_prompt = template.format(task=entry["instruction"])
            break
    return [
        {
            "source_sentence": task_prompt + (query or DEFAULT_WIDGET_QUERY),
            "sentences": list(passages or DEFAULT_WIDGET_PASSAGES),
            "example_title": "Instructed query vs. passages",
        }
    ]


def training_sections(training_config: Mapping | None) -> dict[str, Any]:
    """Split a free-form training config into what the template shows: stages, hyper-parameters, data, hardware."""
    if not training_config:
        return {}
    config = dict(training_config)
    stages = config.pop("stages", None)
    if isinstance(stages, Mapping):
        stages = [{"name": name, **dict(stage)} for name, stage in stages.items()]
    datasets = config.pop("datasets", None)
    hardware = config.pop("hardware", None)
    command = config.pop("command", None)
    return {
        "stages": [
            {"name": s.get("name", f"stage {i + 1}"), "rows": _rows(s, skip={"name"})}
            for i, s in enumerate(stages or [])
        ],
        "hyperparameters": _rows(config),
        "datasets": [datasets] if isinstance(datasets, str) else list(datasets or []),
        "hardware": hardware,
        "command": command,
    }


def _rows(mapping: Mapping, skip: set[str] = frozenset()) -> list[tuple[str, str]]:
    rows = []
    for key, value in mapping.items():
        if key in skip:
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, Mapping):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        rows.append((str(key), str(value).replace("|", "\\|").replace("\n", " ")))
    return rows


def recipe_comparison(results_dir: Path | None = None) -> dict[str, str] | None:
    """The repository's saved test-split comparison (`eval.results_table`: `make train`, `make demo`, the raw backbone,
    all-MiniLM-L6-v2, BM25) as the card's "Against other systems" table and its out-of-domain sentence; None where
    the saved files are not there (an installed package rather than a checkout)."""
    from eval.results_table import RESULTS_DIR, markdown, out_of_domain_gaps, readme_results

    results_dir = results_dir or RESULTS_DIR
    if not results_dir.is_dir():
        logger.info("no %s: the card leaves out the comparison with other systems", results_dir)
        return None
    results = readme_results(results_dir)
    return {"table": markdown(results), "out_of_domain": out_of_domain_gaps(results)}


def render_card(
    model_dir: str | Path,
    *,
    base_model: str,
    training_config: Mapping | None = None,
    eval_results: Sequence[EvalResult | Mapping] | Mapping | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    language: str | list[str] = "en",
    datasets: list[str] | None = None,
    widget_query: str | None = None,
    widget_passages: Sequence[str] | None = None,
    template_path: str | Path = TEMPLATE_PATH,
    comparison: Mapping[str, str] | None = None,
    write: bool = True,
) -> ModelCard:
    """Render `model_card.md` for the NV-Embed folder `model_dir` and write it to `model_dir/README.md`.

    Args:
        model_dir: A converted or trained NV-Embed folder (config.json, config_sentence_transformers.json, ...).
        base_model: Hub id of the backbone LLM (metadata `base_model`).
        training_config: Free-form dict; keys `stages` (list or {name: dict}), `datasets`, `hardware`, `command` get
            their own sections, the other keys form the hyper-parameter table. `None`: read `training_config.json` if
            present.
        eval_results: See `to_eval_results`. `None`: read `eval_results.json` if present.
        repo_id: The Hub repo the card is for (usage snippets, model-index name); default: the folder name.
        license, language, datasets: Metadata fields. `datasets` defaults to training_config["datasets"].
        widget_query, widget_passages: The widget's example (the query is prefixed with the first retrieval
            instruction of `instructions.json`, else the folder's "query" prompt).
        comparison: {"table", "out_of_domain"} for the card's comparison with other systems; `None`: the
            repository's saved one (`recipe_comparison`), `{}`: none.
        write: Write README.md into `model_dir` (False: only return the card).

    Returns:
        The `ModelCard`; `card.data` holds the metadata.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a model folder: config.json is missing.")
    config = read_json(model_dir / "config.json")
    st_config = read_json(model_dir / "config_sentence_transformers.json") or {}
    prompts = st_config.get("prompts") or {}
    query_prompt = prompts.get("query", "")
    instructions = load_instructions(model_dir)
    template = instruction_template(model_dir)
    if training_config is None:
        training_config = read_json(model_dir / TRAINING_CONFIG_FILE)
    if eval_results is None:
        eval_results = read_json(model_dir / EVAL_RESULTS_FILE)
    results = to_eval_results(eval_results, instructions)
    training = training_sections(training_config)
    model_name = repo_id or model_dir.resolve().name
    versions = supported_versions(model_dir)

    card_data = ModelCardData(
        base_model=base_model,
        datasets=datasets if datasets is not None else (training.get("datasets") or None),
        eval_results=results or None,
        language=language,
        library_name="sentence-transformers",
        license=license,
        model_name=model_name,
        pipeline_tag="sentence-similarity",
        tags=list(TAGS),
        widget=widget_examples(instructions, query_prompt, template, widget_query, widget_passages),
        # Not a Hub-defined field: the ranges the folder's code checks when it loads (see the card's Requirements).
        supported_versions=versions,
    )
    text_config = config.get("text_config") or {}
    latent = config.get("latent_attention_config") or {}
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        repo_id=model_name,
        base_model=base_model,
        query_prompt=query_prompt,
        query_prompt_literal=json.dumps(query_prompt),
        document_prompt=prompts.get("document", ""),
        instructions=[
            {"task": task, "kind": entry.get("kind", ""), "instruction": entry["instruction"]}
            for task, entry in instructions.items()
        ],
        instruction_template_literal=json.dumps(template),
        hidden_size=text_config.get("hidden_size"),
        num_layers=text_config.get("num_hidden_layers"),
        backbone_type=text_config.get("model_type"),
        num_latents=latent.get("num_latents_value"),
        num_heads=latent.get("num_cross_heads"),
        pooling_mode=config.get("pooling_mode", "latent_attention"),
        max_seq_length=(read_json(model_dir / "sentence_bert_config.json") or {}).get("max_seq_length"),
        training=training,
        results=results,
        comparison=recipe_comparison() if comparison is None else dict(comparison),
        citation=CITATION,
        transformers_range=versions["transformers"],
        sentence_transformers_range=versions["sentence_transformers"],
    )
    if write:
        card.save(model_dir / "README.md")
        logger.info("wrote %s", model_dir / "README.md")
    return card
