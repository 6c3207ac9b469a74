"""The paper's ablations at our scale: causal vs bidirectional x latent / mean / last-token pooling, and two-stage vs
single-stage training, each trained from the same base config and evaluated on the held-out test splits.

    python -m eval.ablations [--config train/configs/ablation.yaml] [--output-dir runs/ablations] [--only NAME ...]

Every run is resumable (finished stages are skipped), so a killed sweep picks up where it stopped. Writes
`ablations-<split>.md` (the paper's table shape, our numbers beside the paper's) and `.json` (`ablations.md` / `.json`
with `--quick-dev`).
"""

import argparse
import copy
import json
import logging
from pathlib import Path

from train.config import StageConfig, load_config


logger = logging.getLogger(__name__)

# (mask_type, pooling_mode) -> paper's MTEB average after stage 2 (NV-Embed-v1, Table 2)
PAPER_POOLING = {
    ("b", "latent_attention"): 69.32,
    ("b", "mean"): 68.97,
    ("b", "last_token"): 67.85,
    ("c", "latent_attention"): 68.47,
    ("c", "mean"): 68.13,
    ("c", "last_token"): 66.50,
}
# NV-Embed-v2: two-stage vs single-stage (in-batch negatives on everywhere / off for non-retrieval)
PAPER_STAGES = {"two-stage": 72.31, "single-stage, in-batch everywhere": 70.83, "single-stage, in-batch off": 71.94}
MASK_NAMES = {"b": "bidirectional", "c": "causal"}
QUICK_DEV_TASKS = ("debian_description", "pydoc_summary")  # `--quick-dev`: the in-domain retrieval dev tasks


def variants(base) -> dict[str, object]:
    runs = {}
    for mask, pooling in PAPER_POOLING:
        cfg = copy.deepcopy(base)
        cfg.mask_type, cfg.pooling_mode = mask, pooling
        runs[f"{MASK_NAMES[mask]}-{pooling}"] = cfg
    all_tasks = list(dict.fromkeys(t for s in base.stages for t in s.tasks))
    steps = sum(s.max_steps for s in base.stages)
    last = base.stages[-1]
    for name, in_batch in (("single-stage, in-batch everywhere", True), ("single-stage, in-batch off", False)):
        cfg = copy.deepcopy(base)
        cfg.stages = [
            StageConfig(
                tasks=all_tasks,
                max_steps=steps,
                batch_size=last.batch_size,
                learning_rate=base.stages[0].learning_rate,
                num_hard_negatives=last.num_hard_negatives,
                in_batch_negatives_for_non_retrieval=in_batch,
                max_examples_per_task=last.max_examples_per_task,
            )
        ]
        runs[name] = cfg
    return runs


def table(
    scores: dict[str, dict[str, float]], tasks: list[str], measure: str = "average main score, test split"
) -> str:
    def avg(name):
        row = scores.get(name)
        return f"{100 * sum(row[t] for t in tasks) / len(tasks):.2f}" if row else "-"

    lines = [
        f"Pooling x attention mask (ours: {measure}; paper: MTEB average, NV-Embed-v1)",
        "",
        "| mask | latent-attention | mean | last token | paper: latent | paper: mean | paper: last |",
        "|---|---|---|---|---|---|---|",
    ]
    for mask in ("b", "c"):
        ours = [avg(f"{MASK_NAMES[mask]}-{p}") for p in ("latent_attention", "mean", "last_token")]
        paper = [f"{PAPER_POOLING[(mask, p)]:.2f}" for p in ("latent_attention", "mean", "last_token")]
        lines.append(f"| {MASK_NAMES[mask]} | " + " | ".join(ours + paper) + " |")
    lines += [
        "",
        f"Training stages (ours: {measure}; paper: NV-Embed-v2 MTEB average)",
        "",
        "| recipe | ours | paper |",
        "|---|---|---|",
    ]
    stage_rows = {"two-stage": "bidirectional-latent_attention", **{k: k for k in PAPER_STAGES if k != "two-stage"}}
    for label, run in stage_rows.items():
        lines.append(f"| {label} | {avg(run)} | {PAPER_STAGES[label]:.2f} |")
    lines += [
        "",
        "Per task (main score x 100)",
        "",
        "| run | " + " | ".join(tasks) + " |",
        "|---" * (len(tasks) + 1) + "|",
    ]
    for name, row in scores.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[t]:.1f}" for t in tasks) + " |")
    return "\n".join(lines)


def quick_dev_scores(folder: Path, tasks, limit: int, max_seq_length: int) -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    from train.monitor import dev_scores

    model = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    model.max_seq_length = max_seq_length
    row = dev_scores(model, instructions=True, limit=limit)
    return {task: row[task] for task in tasks}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="train/configs/ablation.yaml")
    parser.add_argument("--output-dir", default="runs/ablations")
    parser.add_argument("--only", nargs="*", default=None, help="run only these variant names")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the table from finished variants")
    parser.add_argument("--tasks", nargs="*", default=None, help="eval tasks (default: all local tasks)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-seq-length", type=int, default=256, help="eval token cap (CPU budget)")
    parser.add_argument(
        "--quick-dev",
        type=int,
        default=None,
        metavar="N",
        help="instead of mteb on the test split: nDCG@10 on N dev queries per retrieval task (the demo's check)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from eval.compare import compare
    from eval.export import export
    from train.pipeline import train

    out = Path(args.output_dir)
    base = load_config(args.config)
    runs = variants(base)
    unknown = set(args.only or []) - set(runs)
    if unknown:
        raise ValueError(f"Unknown variant(s) {sorted(unknown)}; known: {sorted(runs)}")
    from eval.tasks import default_eval_dir

    if not default_eval_dir().is_dir():  # shared by side-by-side `--only` processes: written once, before them
        export()
    # One score file per variant (several `--only` processes can run side by side), and one folder per way of scoring:
    # the quick dev check and the test-split mteb run keep their results apart.
    mode = "scores" if args.quick_dev else f"scores-{args.split}"
    results_dir = out / mode
    results_dir.mkdir(parents=True, exist_ok=True)
    for name, cfg in runs.items():
        if args.report_only or (args.only and name not in args.only):
            continue
        slug = name.replace(", ", "-").replace(" ", "-")
        cfg.output_dir = str(out / slug)
        final = Path(cfg.output_dir) / "final"
        if not (final / "model.safetensors").is_file():
            train(cfg, final)
        if args.quick_dev:
            scores = quick_dev_scores(final, args.tasks or list(QUICK_DEV_TASKS), args.quick_dev, args.max_seq_length)
        else:
            result = compare(
                {slug: str(final)},
                args.tasks,
                out / "eval" / slug,
                split=args.split,
                max_seq_length=args.max_seq_length,
                resume=True,  # results are keyed by a fingerprint of the variant's weights: a killed sweep resumes
            )
            scores = result[slug]
        (results_dir / f"{slug}.json").write_text(json.dumps({"name": name, "scores": scores}, indent=2))
    scores = {}
    for name in runs:  # the paper's order
        slug = name.replace(", ", "-").replace(" ", "-")
        if (results_dir / f"{slug}.json").is_file():
            scores[name] = json.loads((results_dir / f"{slug}.json").read_text())["scores"]
    report_name = "ablations" if args.quick_dev else f"ablations-{args.split}"
    (out / f"{report_name}.json").write_text(json.dumps(scores, indent=2))
    tasks = sorted({t for row in scores.values() for t in row})
    if args.quick_dev:
        measure = f"mean nDCG@10 over {', '.join(tasks)}, {args.quick_dev} dev queries each, corpus = their passages"
    else:
        measure = f"average mteb main score over {', '.join(tasks)}, {args.split} split"
    report = table(scores, tasks, measure)
    (out / f"{report_name}.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
