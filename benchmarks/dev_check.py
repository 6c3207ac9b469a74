"""Quick side-by-side dev check of trained model folders: the demo's dev scores (train.monitor.dev_scores, the
sentence-transformers evaluators `make demo` prints) plus a debian_section probe, for levers that are cheaper to
judge this way than with the full mteb sweep (eval.levers, ~10 min per system on 2 cores).

The probe fits sklearn's LogisticRegression on the first CLASSIFIER_ROWS_PER_LABEL train rows of each section (the
mteb protocol) at C=1 (mteb's setting) and at C=10, and prints the mean cosine between those rows. A large gap between
the two accuracies with a high mean cosine says the classes are there but crowded into one cone, where C=1's
regularisation cannot separate them at unit norm.

The out-of-domain probe scores info_section's whole dev split (retrieval, nDCG@10) and reads the dev paragraphs of
`info_manual` (eval/ood.py: Info manuals no training task touches) as two more task types: classification (the
manual, LogisticRegression C=1 on the first OOD_TRAIN_PER_LABEL paragraphs of each manual, accuracy on the rest)
and pair classification (every pair of paragraphs, positive when both come from one manual: average precision of the
cosine, mteb's PairClassification score).

    python benchmarks/dev_check.py demo=nvembed simmse=runs/lv-simmse/model [--dev-queries 100] [--section-rows 500]
    python benchmarks/dev_check.py demo=nvembed minilm=minilm --ood-only [--plain]
    python benchmarks/dev_check.py demo=nvembed minilm=minilm --plain --broad   # + broad dev text, teacher agreement

`--plain` adds the same probe as a user gets it without writing instructions (plain_* columns): the folder's "query"
prompt on the section titles (what mteb's SentenceTransformer wrapper picks for an unknown retrieval task) and no
instruction on the paragraphs.
"""

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def section_probe(model, rows: int, prompt: str | None) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    from train.data import load_source
    from train.data.core import first_rows_per_label

    source = load_source("debian_section")
    train_rows, dev_rows = first_rows_per_label(source["train"].to_list()), source["dev"].to_list()[:rows]
    x = model.encode([r["text"] for r in train_rows], prompt=prompt, batch_size=32, normalize_embeddings=True)
    y = model.encode([r["text"] for r in dev_rows], prompt=prompt, batch_size=32, normalize_embeddings=True)
    x_labels, y_labels = [r["label"] for r in train_rows], [r["label"] for r in dev_rows]
    out = {"section_mean_cos": float((x @ x.T).mean())}
    for c in (1, 10):
        classifier = LogisticRegression(max_iter=100, C=c, random_state=42).fit(x, x_labels)
        out[f"section_acc_C{c}"] = float(classifier.score(y, y_labels))
    return out


OOD_TRAIN_PER_LABEL = 8


def ood_section_ndcg(model, query_prompt: str | None) -> dict[str, float]:
    """info_section's whole dev split: nDCG@10 of each section title (`query_prompt` on it) against every dev
    section."""
    from eval.ood import build
    from train.monitor import retrieval_evaluator

    retrieval = retrieval_evaluator(build()["info_section"]["dev"], "ood_section", query_prompt)
    return {"ood_section_ndcg": float(retrieval(model)["ood_section_cosine_ndcg@10"])}


def ood_probe(model, prompt: str | None) -> dict[str, float]:
    """The Info-manual dev paragraphs as classification and pair classification (`prompt` on every paragraph)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    from eval.ood import build

    rows = build()["info_manual"]["dev"]
    x = model.encode([r["text"] for r in rows], prompt=prompt, batch_size=32, normalize_embeddings=True)
    labels = np.array([r["label"] for r in rows])
    seen: dict[str, int] = {}
    fit = np.zeros(len(rows), dtype=bool)
    for i, label in enumerate(labels):
        fit[i] = seen.get(label, 0) < OOD_TRAIN_PER_LABEL
        seen[label] = seen.get(label, 0) + 1
    classifier = LogisticRegression(max_iter=100, C=1, random_state=42).fit(x[fit], labels[fit])
    upper = np.triu_indices(len(rows), k=1)
    same = (labels[:, None] == labels[None, :])[upper]
    return {
        "ood_manual_acc": float(classifier.score(x[~fit], labels[~fit])),
        "ood_pair_ap": float(average_precision_score(same, (x @ x.T)[upper])),
    }


BROAD_PAIRS = 3000  # random pairs of broad dev texts for the teacher-agreement probe


def broad_probe(model, instructed: bool, teacher=None, paraphrase: bool = True) -> dict[str, float]:
    """Our own dev data beyond software (train/data/broad.py; training-only tasks, dev split never trained on):
    broad_title_section retrieval (nDCG@10 of each heading against every dev section), broad_paraphrase retrieval
    (plain: a King James verse against the 500 dev verses of the World English Bible) and, with `teacher`, how well
    the model's plain cosines on random pairs of broad dev texts follow the teacher's (Spearman): the geometry
    that plain `encode()` for STS, clustering and deduplication reads."""
    import random

    from scipy.stats import spearmanr

    from modeling_nvembed import format_instruction
    from train.data import TASKS, load_source
    from train.data.broad import broad_texts
    from train.monitor import retrieval_evaluator

    rows = load_source("broad_title_section")["dev"]
    prompt = format_instruction(TASKS["broad_title_section"].instruction) if instructed else None
    out = {"broad_section_ndcg": float(retrieval_evaluator(rows, "broad", prompt)(model)["broad_cosine_ndcg@10"])}
    # Paraphrase (a King James verse -> the same verse in the World English Bible among 500): plain on both sides,
    # how plain encode() is used for STS and deduplication; the task is trained without instructions.
    if paraphrase:  # plain either way: the plain-use call below skips it
        paraphrases = load_source("broad_paraphrase")["dev"]
        out["paraphrase_ndcg"] = float(retrieval_evaluator(paraphrases, "para", None)(model)["para_cosine_ndcg@10"])
    if teacher is not None:
        texts = broad_texts("dev", limit=1500)
        rng = random.Random(0)
        pairs = [tuple(rng.sample(range(len(texts)), 2)) for _ in range(BROAD_PAIRS)]
        student = model.encode(texts, batch_size=32, normalize_embeddings=True)
        reference = teacher.encode(texts, batch_size=64, normalize_embeddings=True)
        s = [float(student[i] @ student[j]) for i, j in pairs]
        t = [float(reference[i] @ reference[j]) for i, j in pairs]
        out["broad_teacher_spearman"] = float(spearmanr(s, t).statistic)
    return out


def plain_use(scores: dict[str, float]) -> dict[str, float]:
    return {"plain" + key.removeprefix("ood"): value for key, value in scores.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "models",
        nargs="+",
        help="name=folder; the folder 'minilm' is the bundled all-MiniLM-L6-v2, 'st:PATH' any other "
        "sentence-transformers folder used as it is (no instructions)",
    )
    parser.add_argument("--dev-queries", type=int, default=100)
    parser.add_argument("--section-rows", type=int, default=500)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument(
        "--truncate-dim", type=int, default=None, help="score the leading N dimensions only (Matryoshka levers)"
    )
    parser.add_argument("--ood-only", action="store_true", help="only the out-of-domain probe (~2 min per model)")
    parser.add_argument(
        "--broad",
        action="store_true",
        help="also the broad-text probe: broad_title_section dev retrieval (instructed, and plain with --plain) and "
        "the plain cosines' Spearman agreement with the bundled teacher on random pairs of broad dev texts",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="also the out-of-domain probe as plain use: the folder's 'query' prompt on retrieval queries, no "
        "instruction on the paragraphs (plain_* columns)",
    )
    args = parser.parse_args(argv)
    from sentence_transformers import SentenceTransformer

    from eval.models import plain_folder
    from eval.ood import INSTRUCTIONS as OOD_INSTRUCTIONS
    from modeling_nvembed import format_instruction
    from nvembed_defaults import peer_model_path
    from train.data import TASKS
    from train.monitor import dev_scores

    teacher = SentenceTransformer(str(peer_model_path()), device="cpu") if args.broad else None
    if teacher is not None:
        teacher.max_seq_length = args.max_seq_length
    table = {}
    for spec in args.models:
        name, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"expected name=folder, got {spec!r}")
        peer_folder = plain_folder(folder)
        peer = peer_folder is not None  # encoded without instructions
        path = str(peer_folder or folder)
        if not Path(path, "modules.json").is_file():
            raise SystemExit(f"{path!r} is not a sentence-transformers folder (no modules.json)")
        model = SentenceTransformer(
            path,
            trust_remote_code=not peer,
            device="cpu",
            truncate_dim=None if peer else args.truncate_dim,
        )
        model.max_seq_length = args.max_seq_length
        row = {}
        if not args.ood_only:
            row.update(dev_scores(model, instructions=not peer, limit=args.dev_queries))
            prompt = None if peer else format_instruction(TASKS["debian_section"].instruction)
            row.update(section_probe(model, args.section_rows, prompt))
        if peer:
            row.update(ood_section_ndcg(model, None) | ood_probe(model, None))
        else:
            manual, section = (format_instruction(OOD_INSTRUCTIONS[t]) for t in ("info_manual", "info_section"))
            row.update(ood_section_ndcg(model, section) | ood_probe(model, manual))
            if args.plain:
                # What a user of the folder gets without writing instructions, as mteb's plain SentenceTransformer
                # wrapper encodes an unknown task: the folder's "query" prompt on the titles, nothing elsewhere.
                row.update(plain_use(ood_section_ndcg(model, model.prompts.get("query")) | ood_probe(model, None)))
                if not args.ood_only:  # every in-domain dev task without instructions (STS: none on either side)
                    row.update({f"plain_{k}": v for k, v in dev_scores(model, False, args.dev_queries).items()})
        if args.broad:
            row.update(broad_probe(model, instructed=not peer, teacher=None if peer else teacher))
            if args.plain and not peer:
                plain = broad_probe(model, instructed=False, paraphrase=False)
                row["plain_broad_section_ndcg"] = plain["broad_section_ndcg"]
        table[name] = row
        print(name, row, flush=True)
    columns = list(dict.fromkeys(c for row in table.values() for c in row))  # a peer has no plain_* columns
    print("\n| model | " + " | ".join(columns) + " |\n|---" + "|---:" * len(columns) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{100 * row[c]:.1f}" if c in row else "-" for c in columns) + " |")


if __name__ == "__main__":
    main()
