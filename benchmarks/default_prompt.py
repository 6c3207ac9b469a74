"""Which prompt should a folder apply when the user writes plain `model.encode(sentences)`? (issue 29, item 3)

sentence-transformers applies the folder's `default_prompt_name` prompt to every text of a plain `encode()` call (and
to passages in `encode_document` when the folder has no "document" prompt). This scores each candidate default as that
use sees it, the same prompt on every text of every task, side by side in one process on our own dev data:

- symmetric use (what plain `encode` is mostly for): in-domain STS (debian_tags_pairs dev, Spearman), the Info-manual
  dev paragraphs as pair classification (AP) and classification (accuracy; eval/ood.py: manuals no training task
  touches), debian_section classification (accuracy), and the Spearman agreement of the model's cosines with the
  bundled all-MiniLM-L6-v2's on 3,000 random pairs of broad dev texts (train/data/broad.py, never trained on);
- retrieval done with plain `encode` on both sides (ST 4 users, or anyone who skips `encode_query`): debian_description
  dev, info_section dev and broad_title_section dev (nDCG@10), each against the same task with no prompt anywhere.

    python benchmarks/default_prompt.py runs/levers/demo/final [--limit 300]
"""

import argparse
import random
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nvembed_defaults import SIMILARITY_TASK  # the folder's "similarity" prompt (NV-Embed's STS instruction)


CANDIDATES = {
    "none": None,
    "similarity": SIMILARITY_TASK,
    "query": "query",  # the folder's own "query" prompt (its main retrieval task's instruction)
}
BROAD_TEXTS, BROAD_PAIRS = 1500, 3000


def sts(model, prompt, limit):
    from scipy.stats import spearmanr

    from train.data import load_source

    rows = load_source("debian_tags_pairs")["dev"].to_list()[:limit]
    a = model.encode([r["sentence1"] for r in rows], prompt=prompt, batch_size=32, normalize_embeddings=True)
    b = model.encode([r["sentence2"] for r in rows], prompt=prompt, batch_size=32, normalize_embeddings=True)
    return float(spearmanr((a * b).sum(1), [r["score"] for r in rows]).statistic)


def teacher_agreement(model, prompt, texts, pairs, reference):
    from scipy.stats import spearmanr

    student = model.encode(texts, prompt=prompt, batch_size=32, normalize_embeddings=True)
    s = [float(student[i] @ student[j]) for i, j in pairs]
    t = [float(reference[i] @ reference[j]) for i, j in pairs]
    return float(spearmanr(s, t).statistic)


def symmetric_retrieval(model, rows, name, prompt):
    from train.monitor import retrieval_evaluator

    return float(retrieval_evaluator(rows, name, prompt, corpus_prompt=prompt)(model)[f"{name}_cosine_ndcg@10"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a trained NV-Embed sentence-transformers folder")
    parser.add_argument("--limit", type=int, default=300, help="dev rows per in-domain task")
    parser.add_argument("--max-seq-length", type=int, default=64)
    args = parser.parse_args(argv)
    from sentence_transformers import SentenceTransformer

    from benchmarks.dev_check import ood_probe, section_probe
    from eval.ood import build as build_ood
    from modeling_nvembed import format_instruction
    from nvembed_defaults import peer_model_path
    from train.data import load_source
    from train.data.broad import broad_texts

    model = SentenceTransformer(args.folder, trust_remote_code=True, device="cpu")
    model.max_seq_length = args.max_seq_length
    teacher = SentenceTransformer(str(peer_model_path()), device="cpu")
    teacher.max_seq_length = args.max_seq_length
    texts = broad_texts("dev", limit=BROAD_TEXTS)
    rng = random.Random(0)
    pairs = [tuple(rng.sample(range(len(texts)), 2)) for _ in range(BROAD_PAIRS)]
    reference = teacher.encode(texts, batch_size=64, normalize_embeddings=True)
    retrieval = {
        "debian_description": load_source("debian_description")["dev"].to_list()[: args.limit],
        "info_section": build_ood()["info_section"]["dev"],
        "broad_title_section": load_source("broad_title_section")["dev"].to_list(),
    }
    table = {}
    for name, candidate in CANDIDATES.items():
        start = time.perf_counter()
        if candidate is None:
            prompt = None
        elif candidate in model.prompts:
            prompt = model.prompts[candidate]
        else:
            prompt = format_instruction(candidate)
        row = {"sts": sts(model, prompt, args.limit)}
        row |= ood_probe(model, prompt)
        row["section_acc"] = section_probe(model, args.limit, prompt)["section_acc_C1"]
        row["teacher_agreement"] = teacher_agreement(model, prompt, texts, pairs, reference)
        row |= {f"{task}_both": symmetric_retrieval(model, rows, task, prompt) for task, rows in retrieval.items()}
        table[name] = row
        print(name, repr(prompt), {k: round(100 * v, 1) for k, v in row.items()},
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    columns = list(next(iter(table.values())))
    print(f"\nfolder: {args.folder}; {args.limit} dev rows per in-domain task, {args.max_seq_length} tokens; x 100")
    print("| default prompt | " + " | ".join(columns) + " |\n|---" + "|---:" * len(columns) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{100 * row[c]:.1f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
