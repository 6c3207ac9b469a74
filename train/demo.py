"""The main job (`make demo`): convert the bundled SmolLM2-135M into NV-Embed, train both stages briefly on the
offline data, compare on the dev split, save `./nvembed`, and encode with `SentenceTransformer("nvembed")`.

    python -m train.demo [--config train/configs/demo.yaml] [--output nvembed] [--dev-queries 200] [--baselines]
"""

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from nvembed_defaults import peer_model_path, raw_backbone
from train.config import load_config
from train.pipeline import prepare_base_model, train


logger = logging.getLogger(__name__)

DEV_TASKS = ("debian_description", "pydoc_summary")  # built before training, so their cache exists for the check
# The demo's training time as measured, and the host's fp32 matmul speed then: the expected time here scales with
# this machine's speed (hosts differ 2x on the same step; a host with AMX trains in bf16, ~0.6x of the fp32 time).
# fp32 (`bf16: auto` on a CPU without native bf16) with gradient checkpointing (demo.yaml since 2026-12-07), timed
# whole on a fresh clone. The figure before it (17.9 min at 141 GFLOPS without checkpointing, x 1.17 for checkpointing
# from one stage-2 step) said 27 min on that host: 18% high.
MEASURED_TRAIN = {
    "minutes": 22.9,
    "gflops": 110,
    "where": "benchmarks/results/demo.txt 2026-12-07 late, fp32 on an AVX2 host",
}
# The same demo under bf16 autocast (`bf16: auto` on a CPU with avx512_bf16 or AMX), gradient checkpointing on, timed
# whole on a fresh clone.
MEASURED_TRAIN_BF16 = {
    "minutes": 10.4,
    "gflops": 161,
    "where": "benchmarks/results/demo.txt 2026-12-07, bf16 autocast on an avx512_bf16 host",
}


def expected_minutes(gflops: float, measured: dict = MEASURED_TRAIN) -> float:
    """Training minutes to expect on a machine of `gflops` fp32 matmul speed, from the demo's measured time in the
    same precision (`MEASURED_TRAIN` or `MEASURED_TRAIN_BF16`)."""
    if gflops <= 0:
        raise ValueError(f"gflops must be > 0, got {gflops}")
    return measured["minutes"] * measured["gflops"] / gflops


def compare(systems: dict, limit: int, max_seq_length: int) -> dict[str, dict[str, float]]:
    """system -> dev task -> score, with sentence-transformers' evaluators (train.monitor.dev_evaluators)."""
    from train.monitor import dev_scores

    table = {}
    for name, (loader, instructions) in systems.items():
        model = loader()
        model.max_seq_length = max_seq_length
        row = dev_scores(model, instructions=instructions, limit=limit)
        row["mean"] = float(np.mean(list(row.values())))
        table[name] = row
        logger.info("%s: %s", name, row)
        del model
    return table


def demo_systems(base: Path, final: Path, baselines: bool = False) -> dict:
    """name -> (loader, whether its queries get the task instruction): the trained model and its teacher, and with
    `baselines` the raw backbone and the untrained conversion first (each costs as much to score as the trained)."""
    from sentence_transformers import SentenceTransformer

    systems = {}
    if baselines:
        systems["SmolLM2-135M, mean pooling (raw)"] = (lambda: raw_backbone("mean", ""), False)
        systems["NV-Embed, converted, untrained"] = (
            lambda: SentenceTransformer(str(base), trust_remote_code=True),
            True,
        )
    systems["NV-Embed, trained (this demo)"] = (lambda: SentenceTransformer(str(final), trust_remote_code=True), True)
    minilm = str(peer_model_path())
    systems["all-MiniLM-L6-v2 (bundled peer)"] = (lambda: SentenceTransformer(minilm, device="cpu"), False)
    return systems


def markdown_table(table: dict[str, dict[str, float]]) -> str:
    tasks = [t for t in next(iter(table.values())) if t != "mean"]
    lines = ["| system | " + " | ".join(tasks) + " | mean |", "|---" + "|---:" * (len(tasks) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[t]:.1f}" for t in (*tasks, "mean")) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="train/configs/demo.yaml")
    parser.add_argument("--output", default="nvembed", help="where the trained model is saved")
    parser.add_argument("--dev-queries", type=int, default=100, help="dev queries/pairs per task in the comparison")
    parser.add_argument("--eval-max-seq-length", type=int, default=64)
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="also score the raw backbone (mean pooling) and the untrained conversion: ~3 min each on 2 cores, so "
        "left out of the default run (their numbers are in benchmarks/results/demo.txt and the README)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.time()

    from sentence_transformers import SentenceTransformer

    from train.data import load_source
    from train.monitor import matmul_gflops
    from train.pipeline import uses_bf16

    cfg = load_config(args.config)
    bf16 = uses_bf16(cfg, "cpu")
    measured = MEASURED_TRAIN_BF16 if bf16 else MEASURED_TRAIN
    gflops = matmul_gflops()
    print(
        f"make demo: expect about {expected_minutes(gflops, measured):.0f} min of training on this machine "
        f"({gflops:.0f} GFLOPS fp32 matmul, {'bf16 autocast' if bf16 else 'fp32'}; {measured['minutes']} min at "
        f"{measured['gflops']} GFLOPS when measured, {measured['where']}), plus a few minutes of data, teacher "
        "vectors and evaluation.",
        flush=True,
    )
    for task in DEV_TASKS:  # builds and caches the offline data on first use
        load_source(task)
    base = prepare_base_model(cfg)
    t0 = time.time()
    final = train(cfg, args.output)
    train_minutes = (time.time() - t0) / 60

    systems = demo_systems(base, final, baselines=args.baselines)
    table = compare(systems, args.dev_queries, args.eval_max_seq_length)

    report = (
        f"Dev split, {args.dev_queries} queries/pairs per task, {args.eval_max_seq_length} tokens: nDCG@10 for "
        "retrieval (corpus = those queries' passages; info_section is out of domain), Spearman for debian_tags_pairs, "
        "logistic-regression accuracy (16 train rows per label) for debian_section (dev rows: twice the queries). "
        f"Training {train_minutes:.1f} min, total {(time.time() - start) / 60:.1f} min; this machine: "
        f"{matmul_gflops():.0f} GFLOPS fp32 matmul at {torch.get_num_threads()} threads.\n\n" + markdown_table(table)
    )
    Path(cfg.output_dir, "demo_results.md").write_text(report + "\n")
    from train.monitor import card_results
    from train.pipeline import invocation, write_card

    trained = table["NV-Embed, trained (this demo)"]
    results = card_results({t: v for t, v in trained.items() if t != "mean"})
    write_card(final, cfg, eval_results=results, command=invocation("train.demo", argv))
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
