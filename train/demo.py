"""The main job (`make demo`): convert the bundled SmolLM2-135M into NV-Embed, train both stages briefly on the
offline data, compare on the dev split, save `./nvembed`, and encode with `SentenceTransformer("nvembed")`.

    python -m train.demo [--config train/configs/demo.yaml] [--output nvembed] [--dev-queries 200]
"""

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from eval.models import raw_backbone
from modeling_nvembed import format_instruction
from train.config import load_config
from train.pipeline import prepare_base_model, train


logger = logging.getLogger(__name__)

DEV_TASKS = ("debian_description", "pydoc_summary")


def ndcg_at_10(scores: np.ndarray) -> float:
    """nDCG@10 when query i's only relevant document is document i (scores: queries x documents)."""
    ranks = (scores > scores[np.arange(len(scores)), np.arange(len(scores))][:, None]).sum(axis=1)
    return float(np.mean(np.where(ranks < 10, 1.0 / np.log2(ranks + 2), 0.0)))


def dev_pairs(task: str, limit: int) -> tuple[list[str], list[str]]:
    from train.data import load_source

    dev = load_source(task)["dev"]
    dev = dev.select(range(min(limit, len(dev))))
    return list(dev["query"]), list(dev["passage"])


def st_scores(model, queries, passages, prompt: str | None) -> np.ndarray:
    q = model.encode(queries, prompt=prompt, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    p = model.encode(passages, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    return q @ p.T


def bm25_scores(queries, passages) -> np.ndarray:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(passages, show_progress=False), show_progress=False)
    scores = np.zeros((len(queries), len(passages)), dtype=np.float32)
    for i, query in enumerate(queries):
        scores[i] = retriever.get_scores(bm25s.tokenize([query], show_progress=False, return_ids=False)[0])
    return scores


def compare(systems: dict, tasks, limit: int, max_seq_length: int) -> dict[str, dict[str, float]]:
    from train.data import TASKS

    table = {}
    for name, loader in systems.items():
        model = loader() if name != "BM25" else None
        row = {}
        for task in tasks:
            queries, passages = dev_pairs(task, limit)
            if model is None:
                scores = bm25_scores(queries, passages)
            else:
                model.max_seq_length = max_seq_length
                prompt = format_instruction(TASKS[task].instruction) if name.startswith("NV-Embed") else None
                scores = st_scores(model, queries, passages, prompt)
            row[task] = ndcg_at_10(scores)
        row["mean"] = float(np.mean([row[t] for t in tasks]))
        table[name] = row
        logger.info("%s: %s", name, row)
        del model
    return table


def markdown_table(table: dict[str, dict[str, float]], tasks) -> str:
    lines = ["| system | " + " | ".join(tasks) + " | mean |", "|---" * (len(tasks) + 2) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[t]:.1f}" for t in (*tasks, "mean")) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="train/configs/demo.yaml")
    parser.add_argument("--output", default="nvembed", help="where the trained model is saved")
    parser.add_argument("--dev-queries", type=int, default=100, help="dev queries per task in the comparison")
    parser.add_argument("--eval-max-seq-length", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.time()

    from sentence_transformers import SentenceTransformer

    from train.data import load_source

    for task in DEV_TASKS:  # builds and caches the offline data on first use
        load_source(task)
    cfg = load_config(args.config)
    base = prepare_base_model(cfg)
    t0 = time.time()
    final = train(cfg, args.output)
    train_minutes = (time.time() - t0) / 60

    systems = {
        "SmolLM2-135M, mean pooling (raw)": lambda: raw_backbone("mean", ""),
        "NV-Embed, converted, untrained": lambda: SentenceTransformer(str(base), trust_remote_code=True, device="cpu"),
        "NV-Embed, trained (this demo)": lambda: SentenceTransformer(str(final), trust_remote_code=True, device="cpu"),
        "BM25": None,
    }
    table = compare(systems, DEV_TASKS, args.dev_queries, args.eval_max_seq_length)
    report = (
        f"nDCG@10 on the dev split ({args.dev_queries} queries per task, corpus = their passages), "
        f"training {train_minutes:.1f} min, total {(time.time() - start) / 60:.1f} min\n\n"
        + markdown_table(table, DEV_TASKS)
    )
    Path(cfg.output_dir, "demo_results.md").write_text(report + "\n")
    from publish.card import render_card

    trained = table["NV-Embed, trained (this demo)"]
    render_card(
        final,
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        eval_results={t: {"metric": "ndcg_at_10", "value": trained[t], "dataset_split": "dev"} for t in DEV_TASKS},
    )
    Path(cfg.output_dir, "demo_results.json").write_text(json.dumps(table, indent=2))
    print("\n" + report + "\n")

    model = SentenceTransformer(args.output, trust_remote_code=True, device="cpu")
    query = "compress files into a zip archive"
    passages = [
        "Info-ZIP's zip utility creates compressed archives in the zip format.",
        "A collection of fonts for rendering mathematics in TeX documents.",
        "Network time protocol daemon that keeps the system clock in sync.",
    ]
    q = model.encode([query], prompt_name="debian_description")
    p = model.encode(passages)
    print(f'SentenceTransformer("{args.output}", trust_remote_code=True): query -> passages')
    for passage, score in sorted(zip(passages, model.similarity(q, p)[0].tolist()), key=lambda x: -x[1]):
        print(f"  {score:.3f}  {passage}")


if __name__ == "__main__":
    main()
