"""The ablation table of the training levers: each variant trained from one base config, scored on the dev split.

    python -m eval.levers [--config train/configs/levers.yaml] [--output-dir runs/levers] [--only NAME ...]
    python -m eval.levers --only NAME ... --train-only     # train into OUTPUT_DIR/NAME/final, score elsewhere

`train/configs/levers.yaml` names the base run config and the variants, each a set of overrides of it. Every variant is
trained (resumable: a finished stage is skipped, a finished variant is not retrained), then scored with mteb on the dev
splits of the in-domain tasks and of the out-of-domain tasks (`eval/ood.py`), with the CPU time its training took.
Writes `levers.md` and `levers.json` in the output folder: gain over the reference variant per task and on average.
`--train-only` stops after training (the folders then go to `benchmarks/dev_check.py` or `eval.compare`).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from train.config import RunConfig, StageConfig, load_config


logger = logging.getLogger(__name__)


def apply_overrides(base: RunConfig, overrides: dict) -> RunConfig:
    """`base` with top-level keys replaced; `all_stages` is merged into every stage, `stages` (a list) by index."""
    cfg = copy.deepcopy(base)
    overrides = dict(overrides)
    all_stages = overrides.pop("all_stages", {})
    per_stage = overrides.pop("stages", None)
    values = {**vars(cfg), **overrides}
    stages = [vars(s) | all_stages for s in cfg.stages]
    if per_stage is not None:
        if len(per_stage) > len(stages):
            stages += [{}] * (len(per_stage) - len(stages))
        stages = [{**stage, **(extra or {})} for stage, extra in zip(stages, per_stage)] + stages[len(per_stage) :]
        stages = [s for s in stages if s.get("max_steps", 1) > 0]  # max_steps: 0 drops a stage
    values["stages"] = [StageConfig(**s) for s in stages]
    return RunConfig(**values)


@dataclass
class Levers:
    """`levers.yaml`, read once: the variants (run configs), untrained baselines (name -> `eval.models.load_model`
    spec), the reference variant of the gain column, and how the dev split is scored."""

    variants: dict[str, RunConfig]
    baselines: dict[str, str]
    reference: str
    eval_max_seq_length: int
    eval_max_rows: int | None


def load_levers(path: str | Path) -> Levers:
    spec = yaml.safe_load(Path(path).read_text())
    valid = {"base", "reference", "eval_max_seq_length", "eval_max_rows", "variants", "baselines"}
    unknown = set(spec) - valid
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {path}; valid: {sorted(valid)}")
    base = load_config(spec["base"])
    variants = {}
    for name, overrides in spec["variants"].items():
        overrides = dict(overrides or {})
        # `config: PATH` starts the variant from another run config (e.g. the demo's) instead of `base`
        start = load_config(overrides.pop("config")) if "config" in overrides else base
        variants[name] = apply_overrides(start, overrides)
    reference = spec.get("reference", next(iter(variants)))
    if reference not in variants:
        raise ValueError(f"reference {reference!r} is not a variant of {path}; variants: {sorted(variants)}")
    return Levers(
        variants=variants,
        baselines=dict(spec.get("baselines") or {}),
        reference=reference,
        eval_max_seq_length=int(spec.get("eval_max_seq_length", 64)),
        eval_max_rows=spec.get("eval_max_rows"),
    )


def eval_data(max_rows: int | None) -> Path:
    """The dev export the levers are scored on (each dev split capped at `max_rows`), written on first use."""
    from eval.export import export
    from eval.tasks import default_eval_dir

    folder = default_eval_dir().with_name(f"eval-dev{max_rows or 'all'}")
    if not (folder / "manifest.json").is_file():
        export(output_dir=folder, splits=["dev"], max_rows=max_rows)
    return folder


def run_child(cmd: list[str]) -> None:
    """Run `cmd` to the end (CalledProcessError if it fails); a SIGTERM or Ctrl-C that stops this process stops the
    child too. `subprocess.run` leaves the child running when only its parent is killed (`kill PID`, `pkill -f
    eval.levers`): on 2026-12-07 a stopped lever's training went on beside its restarted copy, both writing one run
    folder."""
    child = subprocess.Popen(cmd)

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    if code:
        raise subprocess.CalledProcessError(code, cmd)


def train_variant(cfg: RunConfig, final: Path) -> dict:
    """Train one variant in a process of its own (`python -m train.pipeline` on the variant's config, written to
    OUTPUT_DIR/run_config.yaml): a run in this process kept the previous variant's model and trainer alive, and the
    next variant's memory check refused to start (2026-12-04). Returns its wall and CPU minutes."""
    config = Path(cfg.output_dir) / "run_config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.time()
    run_child([sys.executable, "-m", "train.pipeline", str(config), "--final-dir", str(final)])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return {"train_wall_min": (time.time() - wall) / 60, "train_cpu_min": cpu / 60}


def table(results: dict[str, dict], reference: str, tasks: list[str], ood: set[str]) -> str:
    def mean(row, names):
        names = [t for t in names if t in row["scores"]]
        return 100 * sum(row["scores"][t] for t in names) / max(1, len(names))

    in_domain = [t for t in tasks if t not in ood]
    out_domain = [t for t in tasks if t in ood]
    ref = results.get(reference)
    header = ["variant", *tasks, "in-domain avg", "OOD avg", "gain in / OOD", "train CPU-min (wall)"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for name, row in results.items():
        cells = [name] + [f"{100 * row['scores'][t]:.1f}" if t in row["scores"] else "-" for t in tasks]
        ind, oodm = mean(row, in_domain), mean(row, out_domain)
        cells += [f"{ind:.1f}", f"{oodm:.1f}"]
        if ref is not None and name != reference:
            cells.append(f"{ind - mean(ref, in_domain):+.1f} / {oodm - mean(ref, out_domain):+.1f}")
        else:
            cells.append("(reference)" if name == reference else "-")
        timing = row.get("timing")
        if timing and timing.get("train_cpu_min") is not None:
            cells.append(f"{timing['train_cpu_min']:.1f} ({timing['train_wall_min']:.1f})")
        elif timing:
            cells.append(f"- ({timing['train_wall_min']:.1f})")
        else:
            cells.append("-")
        if timing and timing.get("note"):
            cells[-1] += f" {timing['note']}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="train/configs/levers.yaml")
    parser.add_argument("--output-dir", default="runs/levers")
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the table from finished variants")
    parser.add_argument("--train-only", action="store_true", help="train the variants (needs --only), score none")
    args = parser.parse_args(argv)
    if args.train_only and not args.only:
        parser.error("--train-only needs --only NAME ...: it trains the variants named there")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from eval.compare import compare
    from eval.tasks import LOCAL_TASKS, OUT_OF_DOMAIN_TASKS

    levers = load_levers(args.config)
    variants, baselines, reference = levers.variants, levers.baselines, levers.reference
    max_len = levers.eval_max_seq_length
    known = set(variants) | set(baselines)
    unknown = set(args.only or []) - known
    if unknown:
        raise ValueError(f"Unknown variant(s) {sorted(unknown)}; known: {sorted(known)}")
    out = Path(args.output_dir)
    (out / "scores").mkdir(parents=True, exist_ok=True)
    tasks = list(LOCAL_TASKS)
    data_dir = eval_data(levers.eval_max_rows)
    for name, cfg in variants.items():
        if args.report_only or (args.only and name not in args.only):
            continue
        result_file = out / "scores" / f"{name}.json"
        if result_file.is_file():
            continue
        cfg.output_dir = str(out / name)
        final = Path(cfg.output_dir) / "final"
        timing_file = Path(cfg.output_dir) / "timing.json"
        if not (final / "model.safetensors").is_file():
            timing_file.parent.mkdir(parents=True, exist_ok=True)
            timing_file.write_text(json.dumps(train_variant(cfg, final)))
        if args.train_only:
            print(f"{name}: {final}")
            continue
        scores = compare(
            {name: str(final)},
            tasks,
            out / "eval",
            split="dev",
            data_dir=data_dir,
            max_seq_length=max_len,
            resume=True,
        )
        timing = json.loads(timing_file.read_text()) if timing_file.is_file() else None
        result_file.write_text(json.dumps({"scores": scores[name], "timing": timing}, indent=2))
    if args.train_only:
        return 0
    for name, spec in baselines.items():
        result_file = out / "scores" / f"{name}.json"
        if args.report_only or (args.only and name not in args.only) or result_file.is_file():
            continue
        scores = compare(
            {name: spec}, tasks, out / "eval", split="dev", data_dir=data_dir, max_seq_length=max_len, resume=True
        )
        result_file.write_text(json.dumps({"scores": scores[name], "timing": None}, indent=2))
    results = {
        name: json.loads((out / "scores" / f"{name}.json").read_text())
        for name in [*baselines, *variants]
        if (out / "scores" / f"{name}.json").is_file()
    }
    report = (
        f"Training levers, scored on the dev split (mteb main score x 100, {max_len} tokens); "
        f"reference: {reference}\n\n" + table(results, reference, tasks, set(OUT_OF_DOMAIN_TASKS))
    )
    (out / "levers.md").write_text(report + "\n")
    (out / "levers.json").write_text(json.dumps(results, indent=2))
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
