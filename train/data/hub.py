"""Public Hugging Face Hub datasets (or local copies of them) as contrastive training rows.

A run config names them under ``datasets:`` (``train.config.DatasetConfig``), and its stages list them in ``tasks:``
beside the built-in tasks. Where the Hub is reachable, ``load_hub_pairs("sentence-transformers/natural-questions")``
downloads a dataset with ``datasets.load_dataset`` and turns it into the rows of ``train.data.training_pairs``.
On machines without the Hub (ours), pass a local copy instead: a folder written by ``save_to_disk`` (a ``Dataset``
or a ``DatasetDict``) or a folder/file of jsonl, json, parquet or csv; ``hub_name`` gives a local copy its published
dataset's mapping. A Hub name without Hub access fails within seconds with a message saying what to do, instead of
datasets' retry loop.

``columns`` maps the columns of the dataset's kind onto the dataset's own columns:

============== =========================================== ==================================================
kind           ``columns`` keys                            training rows
============== =========================================== ==================================================
retrieval      ``anchor``, ``positive``, ``negative_1``..  the mapped columns (published negatives are kept)
classification ``text``, ``label``                         positive: same label; ``negative_1``: another label
clustering     ``text``, ``label``                         positive: same label; ``negative_1``: another label
sts            ``sentence1``, ``sentence2``, ``score``     pairs scored >= 4 of 5; ``negative_1``: a partner
                                                           scored <= 1, else an unscored sentence
============== =========================================== ==================================================

Non-retrieval datasets thus get their ``negative_1`` as the built-in tasks do (``train.data.pairs_from_source``, the
paper's example-based negatives), which HardNegativesOnlyRankingLoss needs. Labels are compared as strings; a
column of lists (mteb's clustering format: one row of ``sentences`` with its ``labels``) is flattened first.
STS scores are rescaled from ``[0, max_score]`` to the built-in tasks' [0, 5].

A retrieval dataset published in BEIR/mteb format (``corpus``, ``queries`` and qrels ``default`` subsets) has
``layout="beir"`` and no ``columns``: ``train.data.beir`` joins it into (query, positive) rows, with negatives drawn
from the same corpus.

``HUB_DATASETS`` lists the NV-Embed paper's public training datasets that are published in these formats, with their
kinds, column mappings and the paper's instructions. Each entry carries the ``DatasetCard`` it was checked against:
the card's URL, the revision of the checked copy, the subset's features and dtypes, and how it was checked
(``source``): ``"card"`` (the card's ``dataset_info``, read from a stored copy of the card), ``"mteb"`` (the installed
mteb 2.26 pins that revision in a task and reads these columns), or ``""``: no card or loader was found, the mapping is
unverified (``unverified_datasets()``; ``train/configs/full.yaml`` marks those entries). This machine has no Hub
access: nothing here was downloaded. tests/test_data_hub.py builds each entry's fixture from its recorded features.

Example:
    >>> from train.data.hub import hub_spec, load_hub_pairs
    >>> pairs = load_hub_pairs("sentence-transformers/natural-questions", limit=1000)  # doctest: +SKIP
    >>> pairs.column_names  # doctest: +SKIP
    ['anchor', 'positive', 'task']
    >>> nq = hub_spec("/data/nq", hub_name="sentence-transformers/natural-questions")
    >>> local = load_hub_pairs("/data/nq", spec=nq)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from .local_or_hub import HubUnavailableError, _load_hub, _load_local, check_available, looks_like_path
from .pairs import pairs_from_source
from .tasks import KIND_FEATURES


logger = logging.getLogger(__name__)

# The training columns of each kind: required, then optional (retrieval: any number of negative_N).
KIND_COLUMNS = {
    "retrieval": ("anchor", "positive"),
    "classification": ("text", "label"),
    "clustering": ("text", "label"),
    "sts": ("sentence1", "sentence2", "score"),
}
STS_MAX_SCORE = 5.0  # the built-in STS tasks' scale, which STS_POSITIVE_MIN_SCORE refers to
LAYOUTS = ("rows", "beir")
CARD_SOURCES = ("card", "mteb", "")
HUB_DATASET_URL = "https://huggingface.co/datasets/"


@dataclass(frozen=True)
class DatasetCard:
    """What a ``HUB_DATASETS`` mapping was checked against.

    Args:
        url (`str`): The dataset's page, ``https://huggingface.co/datasets/OWNER/NAME``.
        features (`dict[str, str]`): The columns of the subset used and their dtypes as recorded (``string``,
            ``int64``, ``float64``, ``list<string>``); the tests build each entry's fixture from them.
        revision (`str`, *optional*): Commit of the checked copy (None: the stored copy named none, i.e. ``main``).
        source (`str`, *optional*, defaults to ""): ``"card"``: the card's ``dataset_info``; ``"mteb"``: mteb 2.26's
            task pins ``revision`` and reads these columns; ``""``: not found, the mapping is unverified.
        splits (`tuple[str, ...]`, *optional*): The splits recorded (empty: not recorded).
        note (`str`, *optional*): What differs from a plain check (another subset's features, a caveat).
    """

    url: str
    features: dict[str, str]
    revision: str | None = None
    source: str = ""
    splits: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self):
        if not self.url.startswith(HUB_DATASET_URL):
            raise ValueError(f"url must start with {HUB_DATASET_URL}, got {self.url!r}")
        if self.source not in CARD_SOURCES:
            raise ValueError(f"source must be one of {CARD_SOURCES}, got {self.source!r}")

    @property
    def verified(self) -> bool:
        return bool(self.source)


@dataclass(frozen=True)
class HubDatasetSpec:
    """How one published dataset becomes training rows.

    Args:
        kind (`str`): "retrieval", "classification", "clustering" or "sts".
        columns (`dict[str, str]`): The dataset's column for each column of the kind (see the module docstring).
        instruction (`str`, *optional*, defaults to ""): Task instruction for the query template (the NV-Embed
            paper's instruction for the dataset, or its MTEB task's).
        subset (`str`, *optional*): Dataset config name passed to ``load_dataset``.
        max_score (`float`, *optional*, defaults to 5.0): Top of an STS dataset's score scale.
        min_score (`float`, *optional*, defaults to 0.0): Bottom of an STS dataset's score scale (STS22: 1).
        layout (`str`, *optional*, defaults to "rows"): "rows" (one row per example, ``columns`` maps them) or
            "beir" (corpus + queries + qrels, retrieval only, no ``columns``; ``train.data.beir``).
        card (`DatasetCard`, *optional*): What a registered mapping was checked against.
    """

    kind: str
    columns: dict[str, str] = field(default_factory=dict)
    instruction: str = ""
    subset: str | None = None
    max_score: float = STS_MAX_SCORE
    min_score: float = 0.0
    layout: str = "rows"
    card: DatasetCard | None = None

    def __post_init__(self):
        if self.kind not in KIND_COLUMNS:
            raise ValueError(f"kind must be one of {sorted(KIND_COLUMNS)}, got {self.kind!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.layout == "beir":
            if self.kind != "retrieval" or self.columns:
                raise ValueError(
                    f"a beir-layout dataset is retrieval and takes no columns (the loader joins corpus, queries and "
                    f"qrels); got kind={self.kind!r}, columns={dict(self.columns)}"
                )
            return
        required = KIND_COLUMNS[self.kind]
        missing = [column for column in required if column not in self.columns]
        extra = [column for column in self.columns if column not in required and not _is_negative(column, self.kind)]
        if missing or extra:
            raise ValueError(
                f"columns of a {self.kind} dataset need the keys {list(required)}"
                + (" (and optionally negative_1, negative_2, ...)" if self.kind == "retrieval" else "")
                + f"; got {sorted(self.columns)}"
            )
        sources = list(self.columns.values())
        if len(set(sources)) != len(sources):
            raise ValueError(f"A column is used twice in the mapping: {dict(self.columns)}")
        if not self.max_score > self.min_score:
            raise ValueError(
                f"max_score must be > min_score, got max_score={self.max_score}, min_score={self.min_score}"
            )

    @property
    def target_columns(self) -> list[str]:
        """The training columns in sentence-transformers' order (retrieval: anchor, positive, negative_1, ...)."""
        if self.layout == "beir":
            return list(KIND_COLUMNS["retrieval"])
        negatives = sorted((c for c in self.columns if _is_negative(c, self.kind)), key=lambda c: int(c[9:]))
        if [int(c[9:]) for c in negatives] != list(range(1, len(negatives) + 1)):
            raise ValueError(f"negative columns must be negative_1..negative_N without gaps, got {negatives}")
        return [*KIND_COLUMNS[self.kind], *negatives]


def _is_negative(column: str, kind: str) -> bool:
    return kind == "retrieval" and column.startswith("negative_") and column[9:].isdigit()


def _classification(text: str, label: str, subset: str | None, instruction: str, card: DatasetCard):
    return HubDatasetSpec("classification", {"text": text, "label": label}, instruction, subset, card=card)


def _card(name: str, features: dict[str, str], revision: str | None = None, source: str = "", **kwargs) -> DatasetCard:
    return DatasetCard(HUB_DATASET_URL + name, features, revision, source, **kwargs)


_S = "string"
_TRIPLET = {"anchor": _S, "positive": _S, "negative": _S}
_MTEB_CLASSIFICATION = {"text": _S, "label": "int64"}
_MTEB_STS = {"sentence1": _S, "sentence2": _S, "score": "float64"}
_MTEB_RAW = "mteb's raw_* sources are read by no mteb 2.26 task and no stored card lists their dataset_info"
_BEIR = "BEIR layout: corpus (_id, title, text), queries (_id, text), default = qrels (query-id, corpus-id, score)"
_BEIR_FEATURES = {"query-id": _S, "corpus-id": _S, "score": "float64"}

# The NV-Embed paper's public training data (section 5) where it is published in a format these loaders read. The
# revisions are those of the card copies that were read (a search index of stored Hugging Face pages; ``None``: the
# copy of ``main`` named no commit) or the revision mteb 2.26 pins; loading does not pin them.
HUB_DATASETS: dict[str, HubDatasetSpec] = {
    "sentence-transformers/msmarco-bm25": HubDatasetSpec(
        "retrieval",
        {"anchor": "query", "positive": "positive", "negative_1": "negative"},
        "Given a web search query, retrieve relevant passages that answer the query",
        subset="triplet",
        card=_card(
            "sentence-transformers/msmarco-bm25",
            {"query": _S, "positive": _S, "negative": _S},
            "d215805a20e56917e6763b25b059238b7cbfd864",
            "card",
            splits=("train",),
        ),
    ),
    "sentence-transformers/hotpotqa": HubDatasetSpec(
        "retrieval",
        {"anchor": "anchor", "positive": "positive", "negative_1": "negative"},
        "Given a multi-hop question, retrieve documents that can help answer the question",
        subset="triplet",
        card=_card(
            "sentence-transformers/hotpotqa",
            _TRIPLET,
            "6da4e1d77826770d442d4b2750dc349cbca25ea1",
            "card",
            splits=("train",),
            note="features read from the triplet-all subset's dataset_info at this commit; the triplet subset (added "
            "at 67030cc, 84.5k rows in the viewer) has no stored dataset_info",
        ),
    ),
    "sentence-transformers/natural-questions": HubDatasetSpec(
        "retrieval",
        {"anchor": "query", "positive": "answer"},
        "Given a question, retrieve Wikipedia passages that answer the question",
        subset="pair",  # the card's only subset (was left to the default)
        card=_card(
            "sentence-transformers/natural-questions",
            {"query": _S, "answer": _S},
            "f9e894e1081e206e577b4eaa9ee6de2b06ae6f17",
            "card",
            splits=("train",),
            note="columns from the card's example row (its prose says 'question', the row has 'query')",
        ),
    ),
    "sentence-transformers/paq": HubDatasetSpec(
        "retrieval",
        {"anchor": "query", "positive": "answer"},
        "Given a question, retrieve Wikipedia passages that answer the question",
        subset="pair",
        card=_card(
            "sentence-transformers/paq",
            {"query": _S, "answer": _S},
            note="the card (main at 74601d8) has one subset, pair; its dataset_info was not in the stored copy",
        ),
    ),
    "sentence-transformers/stackexchange-duplicates": HubDatasetSpec(
        "retrieval",
        {"anchor": "title1", "positive": "title2"},
        "Given a question, retrieve questions that are semantically equivalent to the given question",
        subset="title-title-pair",
        card=_card(
            "sentence-transformers/stackexchange-duplicates",
            {"title1": _S, "title2": _S},
            None,
            "card",
            splits=("train",),
        ),
    ),
    "sentence-transformers/all-nli": HubDatasetSpec(
        "retrieval",
        {"anchor": "anchor", "positive": "positive", "negative_1": "negative"},
        "Given a premise, retrieve a hypothesis that is entailed by the premise",
        subset="triplet",
        card=_card("sentence-transformers/all-nli", _TRIPLET, None, "card", splits=("train", "dev", "test")),
    ),
    "sentence-transformers/squad": HubDatasetSpec(
        "retrieval",
        {"anchor": "question", "positive": "answer"},
        "Given a question, retrieve Wikipedia passages that answer the question",
        subset="pair",
        card=_card(
            "sentence-transformers/squad",
            {"question": _S, "answer": _S},
            note="the card (main at d84c8c2) has one subset, pair; its dataset_info was not in the stored copy",
        ),
    ),
    "sentence-transformers/fever": HubDatasetSpec(
        "retrieval",
        {"anchor": "anchor", "positive": "positive", "negative_1": "negative"},
        "Given a claim, retrieve documents that support or refute the claim",
        subset="triplet",
        card=_card("sentence-transformers/fever", _TRIPLET, note="no stored copy of the card was found"),
    ),
    "sentence-transformers/gooaq": HubDatasetSpec(
        "retrieval",
        {"anchor": "question", "positive": "answer"},
        "Given a question, retrieve passages that answer the question",
        card=_card(
            "sentence-transformers/gooaq", {"question": _S, "answer": _S}, note="no stored copy of the card was found"
        ),
    ),
    # Classification: mteb 2.26's AbsTaskClassification reads `text` and `label` of these revisions. `label` (the
    # class id) replaces the `label_text` the mappings used to read, which only banking77's files show.
    "mteb/amazon_counterfactual": _classification(
        "text",
        "label",
        "en",
        "Classify a given Amazon customer review text as either counterfactual or not-counterfactual",
        _card(
            "mteb/amazon_counterfactual",
            _MTEB_CLASSIFICATION,
            "1f7e6a9d6fa6e64c53d146e428565640410c0df1",
            "mteb",
            splits=("train", "validation", "test"),
        ),
    ),
    "mteb/amazon_reviews_multi": _classification(
        "text",
        "label",
        "en",
        "Classify the given Amazon review into its appropriate rating category",
        _card(
            "mteb/amazon_reviews_multi",
            _MTEB_CLASSIFICATION,
            note="mteb 2.26 reads mteb/AmazonReviewsClassification instead; this repository's card was not found",
        ),
    ),
    "mteb/banking77": _classification(
        "text",
        "label_text",
        None,
        "Given a online banking query, find the corresponding intents",
        _card(
            "mteb/banking77",
            {"text": _S, "label": "int64", "label_text": _S},
            "0fd18e25b25c072e09e0d92ab615fda904d66300",
            "mteb",
            splits=("train", "test"),
            note="the card is empty; the repository's prepare_data.py (this commit) writes text, label, label_text",
        ),
    ),
    "mteb/emotion": _classification(
        "text",
        "label",
        None,
        "Classify the emotion expressed in the given Twitter message into one of the six emotions: anger, "
        "fear, joy, love, sadness, and surprise",
        _card(
            "mteb/emotion",
            _MTEB_CLASSIFICATION,
            "4f58c6b202a23cf9a4da393831edf4f9183cad37",
            "mteb",
            splits=("train", "validation", "test"),
            note="the card (6c362e0) warns that train and test overlap",
        ),
    ),
    "mteb/imdb": _classification(
        "text",
        "label",
        None,
        "Classify the sentiment expressed in the given movie review text from the IMDB dataset",
        _card("mteb/imdb", _MTEB_CLASSIFICATION, "3d86128a09e091d6018b6d26cad27f2739fc2db7", "mteb"),
    ),
    "mteb/mtop_intent": _classification(
        "text",
        "label",
        "en",
        "Classify the intent of the given utterance in task-oriented conversation",
        _card(
            "mteb/mtop_intent",
            _MTEB_CLASSIFICATION,
            note="mteb 2.26 reads mteb/MTOPIntentClassification instead; this repository's card was not found",
        ),
    ),
    "mteb/toxic_conversations_50k": _classification(
        "text",
        "label",
        None,
        "Classify the given comments as either toxic or not toxic",
        _card(
            "mteb/toxic_conversations_50k", _MTEB_CLASSIFICATION, "edfaf9da55d3dd50d43143d90c1ac476895ae6de", "mteb"
        ),
    ),
    "mteb/tweet_sentiment_extraction": _classification(
        "text",
        "label",
        None,
        "Classify the sentiment of a given tweet as either positive, negative, or neutral",
        _card(
            "mteb/tweet_sentiment_extraction", _MTEB_CLASSIFICATION, "d604517c81ca91fe16a244d1248fc021f9ecee7a", "mteb"
        ),
    ),
    "mteb/raw_arxiv": HubDatasetSpec(
        "clustering",
        {"text": "title", "label": "categories"},
        "Identify the main and secondary category of Arxiv papers based on the titles",
        card=_card("mteb/raw_arxiv", {"title": _S, "categories": _S}, note=_MTEB_RAW),
    ),
    "mteb/raw_biorxiv": HubDatasetSpec(
        "clustering",
        {"text": "title", "label": "category"},
        "Identify the main category of Biorxiv papers based on the titles",
        card=_card("mteb/raw_biorxiv", {"title": _S, "category": _S}, note=_MTEB_RAW),
    ),
    "mteb/raw_medrxiv": HubDatasetSpec(
        "clustering",
        {"text": "title", "label": "category"},
        "Identify the main category of Medrxiv papers based on the titles",
        card=_card("mteb/raw_medrxiv", {"title": _S, "category": _S}, note=_MTEB_RAW),
    ),
    "mteb/twentynewsgroups-clustering": HubDatasetSpec(
        "clustering",
        {"text": "sentences", "label": "labels"},
        "Identify the topic or theme of the given news articles",
        card=_card(
            "mteb/twentynewsgroups-clustering",
            {"sentences": "list<string>", "labels": "list<string>"},
            "6125ec4e24fa026cec8a478383ee943acfbd5449",
            "mteb",
            splits=("test",),
            note="mteb reads only the test split (rows of sentence lists with their labels); a train split is not "
            "recorded, and training on test would train on MTEB's TwentyNewsgroupsClustering test set",
        ),
    ),
    # STS: mteb 2.26's AbsTaskSTS reads sentence1, sentence2, score; STS12 and STSBenchmark score 0-5, STS22 1-4.
    "mteb/sts12-sts": HubDatasetSpec(
        "sts",
        {"sentence1": "sentence1", "sentence2": "sentence2", "score": "score"},
        "Retrieve semantically similar text",
        card=_card("mteb/sts12-sts", _MTEB_STS, "a0d554a64d88156834ff5ae9920b964011b16384", "mteb"),
    ),
    "mteb/stsbenchmark-sts": HubDatasetSpec(
        "sts",
        {"sentence1": "sentence1", "sentence2": "sentence2", "score": "score"},
        "Retrieve semantically similar text",
        card=_card("mteb/stsbenchmark-sts", _MTEB_STS, "b0fddb56ed78048fa8b90373c8a3cfc37b684831", "mteb"),
    ),
    "mteb/sts22-crosslingual-sts": HubDatasetSpec(
        "sts",
        {"sentence1": "sentence1", "sentence2": "sentence2", "score": "score"},
        "Retrieve semantically similar text",
        subset="en",
        max_score=4.0,
        min_score=1.0,
        card=_card(
            "mteb/sts22-crosslingual-sts",
            _MTEB_STS,
            "de9d86b3b84231dc21f76c7b7af1f28e2f57f6e3",
            "mteb",
            note="mteb reads the test split; a train split is not recorded",
        ),
    ),
    # BEIR-format retrieval sets (train.data.beir joins corpus, queries and the qrels of the split).
    "mteb/fiqa": HubDatasetSpec(
        "retrieval",
        instruction="Given a financial question, retrieve user replies that best answer the question",
        layout="beir",
        card=_card(
            "mteb/fiqa",
            _BEIR_FEATURES,
            "27a168819829fe9bcd655c2df245fb19452e8e06",
            "card",
            splits=("train", "dev", "test"),
            note=_BEIR,
        ),
    ),
    "mteb/nfcorpus": HubDatasetSpec(
        "retrieval",
        instruction="Given a question, retrieve relevant documents that best answer the question",
        layout="beir",
        card=_card(
            "mteb/nfcorpus",
            _BEIR_FEATURES,
            "ec0fa4fe99da2ff19ca1214b7966684033a58814",
            "card",
            splits=("train", "dev", "test"),
            note=_BEIR,
        ),
    ),
    "mteb/scifact": HubDatasetSpec(
        "retrieval",
        instruction="Given a scientific claim, retrieve documents that support or refute the claim",
        layout="beir",
        card=_card(
            "mteb/scifact",
            _BEIR_FEATURES,
            "d56462d0e63a25450459c4f213e49ffdb866f7f9",
            "mteb",
            note=_BEIR + "; the viewer lists the subsets corpus, default (1.26k qrels: train and test) and queries",
        ),
    ),
}


def unverified_datasets() -> list[str]:
    """The ``HUB_DATASETS`` names whose card was not found (``DatasetCard.source == ""``)."""
    return sorted(name for name, spec in HUB_DATASETS.items() if spec.card is None or not spec.card.verified)


def hub_spec(
    name_or_path: str | Path,
    *,
    hub_name: str | None = None,
    kind: str | None = None,
    columns: Mapping[str, str] | None = None,
    instruction: str | None = None,
    subset: str | None = None,
    max_score: float | None = None,
) -> HubDatasetSpec:
    """The mapping of a dataset: the ``HUB_DATASETS`` entry of ``hub_name`` (else of ``name_or_path``), with the
    given arguments replacing its fields; for a dataset not listed there, ``kind`` and ``columns`` are required.

    Raises:
        ValueError: No mapping is known, or the arguments make an invalid one (the message says which).
    """
    registered = HUB_DATASETS.get(hub_name or str(name_or_path))
    if hub_name is not None and registered is None:
        raise ValueError(f"hub_name {hub_name!r} is not in HUB_DATASETS; known names: {sorted(HUB_DATASETS)}")
    if registered is None and (kind is None or columns is None):
        raise ValueError(
            f"No column mapping known for {str(name_or_path)!r}: give kind and columns, or hub_name if it is a copy "
            f"of a registered dataset (registered names: {sorted(HUB_DATASETS)})"
        )
    kind = kind or registered.kind
    if registered is not None and kind != registered.kind and columns is None:
        raise ValueError(f"kind {kind!r} differs from the registered {registered.kind!r}: give its columns too")
    return HubDatasetSpec(
        kind=kind,
        columns=dict(columns if columns is not None else registered.columns),
        instruction=instruction if instruction is not None else (registered.instruction if registered else ""),
        subset=subset or (registered.subset if registered else None),
        max_score=max_score or (registered.max_score if registered else STS_MAX_SCORE),
        min_score=registered.min_score if registered else 0.0,
        layout=registered.layout if registered is not None and columns is None else "rows",
        card=registered.card if registered else None,
    )


def _source_rows(dataset: datasets.Dataset, spec: HubDatasetSpec) -> datasets.Dataset:
    """A classification/clustering/sts dataset in the built-in tasks' source schema (``KIND_FEATURES``)."""
    columns = {target: dataset[source] for target, source in spec.columns.items()}
    first = next(iter(columns.values()))
    if first and isinstance(first[0], list):  # mteb clustering: each row holds a list of texts and their labels
        columns = {target: [item for row in values for item in row] for target, values in columns.items()}
    if spec.kind == "sts":
        scale = STS_MAX_SCORE / (spec.max_score - spec.min_score)
        columns["score"] = [(float(score) - spec.min_score) * scale for score in columns["score"]]
    else:
        columns["label"] = [str(label) for label in columns["label"]]
    features = KIND_FEATURES[spec.kind]
    return datasets.Dataset.from_dict({c: columns[c] for c in features}, features=features)


def load_hub_pairs(
    name_or_path: str | Path,
    *,
    spec: HubDatasetSpec | None = None,
    split: str = "train",
    task: str | None = None,
    limit: int | None = None,
    seed: int = 42,
    num_negatives: int = 1,
) -> datasets.Dataset:
    """Loads a Hub dataset or a local copy as training rows: ``anchor``, ``positive``, ``negative_1``.., ``task``.

    Args:
        name_or_path: A Hub dataset name, a folder written by ``save_to_disk``, or a folder/file of jsonl, json,
            parquet or csv. An existing local path always wins over a Hub name.
        spec: Kind and column mapping; defaults to ``hub_spec(name_or_path)`` (the ``HUB_DATASETS`` entry).
        split: Split to load; ignored for a saved single ``Dataset`` or a single file.
        task: Value of the ``task`` column; defaults to the last path component.
        limit: Keep only the first ``limit`` rows of the dataset (before pairing).
        seed: Seed of the positive/negative draws of non-retrieval kinds.
        num_negatives: classification and clustering: negatives per row, each of a different other label; a
            beir-layout dataset: negatives per row drawn from its corpus (0: none, mined later).

    Returns:
        A ``datasets.Dataset``: retrieval: ``anchor``, ``positive``, the mapped ``negative_N``, ``task``; other kinds:
        ``anchor``, ``positive``, ``negative_1``, ``task`` (see the module docstring).

    Raises:
        ValueError: A mapped column is missing (the message lists the dataset's columns), the split is missing, or no
            column mapping is known.
        FileNotFoundError: ``name_or_path`` looks like a path but does not exist.
        HubUnavailableError: ``name_or_path`` is a Hub name and the Hub is unreachable or offline.

    Example:
        >>> spec = hub_spec("/data/nq", kind="retrieval", columns={"anchor": "query", "positive": "answer"})
        >>> pairs = load_hub_pairs("/data/nq", spec=spec)  # doctest: +SKIP
        >>> pairs.column_names  # doctest: +SKIP
        ['anchor', 'positive', 'task']
    """
    name = str(name_or_path)
    spec = spec or hub_spec(name)
    task = task or Path(name.rstrip("/")).name
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if spec.layout == "beir":
        from .beir import load_beir_pairs

        return load_beir_pairs(name, split=split, task=task, limit=limit, seed=seed, num_negatives=num_negatives)
    targets = spec.target_columns
    source = [spec.columns[target] for target in targets]
    path = Path(name).expanduser()
    if path.exists():
        dataset = _load_local(path, split)
    elif looks_like_path(name):
        raise FileNotFoundError(f"No dataset at {name!r} (a path, not a Hub name)")
    else:
        dataset = _load_hub(name, spec.subset, split)
    missing = [column for column in source if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{name!r} has no column {missing[0]!r} (missing: {missing}); its columns: {dataset.column_names}"
        )
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if spec.kind != "retrieval":
        rng = random.Random(f"{seed}:{task}:{split}")
        pairs = datasets.Dataset.from_dict(
            pairs_from_source(_source_rows(dataset, spec), spec.kind, rng, num_negatives)
        )
        logger.info("loaded %d rows of %s as %d %s pairs of task %r", len(dataset), name, len(pairs), spec.kind, task)
        return pairs.add_column("task", [task] * len(pairs))
    dataset = dataset.select_columns(source)
    # Rename through temporary names so mappings that swap names (anchor <-> positive) stay correct.
    dataset = dataset.rename_columns({column: f"__nvembed_{i}" for i, column in enumerate(source)})
    dataset = dataset.rename_columns({f"__nvembed_{i}": target for i, target in enumerate(targets)})
    logger.info("loaded %d rows of %s as task %r", len(dataset), name, task)
    return dataset.add_column("task", [task] * len(dataset))


__all__ = [
    "HUB_DATASETS",
    "DatasetCard",
    "HubDatasetSpec",
    "HubUnavailableError",
    "check_available",
    "hub_spec",
    "load_hub_pairs",
    "unverified_datasets",
]
