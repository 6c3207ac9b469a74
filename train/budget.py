"""Training by time: fit a run's steps to a budget in minutes from the step time measured on this machine.

The same 2-core step has taken 9 s on one host and 43 s on another, so a fixed step count gives a 20-minute run on one
and a 90-minute run on the next. With a budget, the run measures one training step at its own shape before the first
stage (`measure_step_seconds`: forward and backward of a full batch, the optimizer's share is small), scales every
stage's `max_steps` by the same factor so that the planned steps fill the time left (less `RESERVE` for teacher
vectors, checkpoints, dev evaluations and the final save), and writes the plan to `OUTPUT_DIR/budget.json`. A resumed
run reads the plan back and keeps its steps (the learning-rate schedule depends on them); asking a resumed run for
another budget is refused.

    python -m train.pipeline train/configs/train.yaml --budget-minutes 120      # make train BUDGET=120
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path


logger = logging.getLogger(__name__)

RESERVE = 0.15  # share of the budget kept for work besides training steps
PLAN_FILE = "budget.json"


def stage_columns(stage) -> int:
    """Text columns per row of a stage's batches: query + positive (+ mined negatives); 3 with label-based rows."""
    return 2 + max(stage.num_hard_negatives, stage.label_negatives if len(stage.tasks) > 2 else 0)


def measure_step_seconds(model, batch_size: int, columns: int, length: int, repeats: int = 2) -> float:
    """Seconds of one forward + backward of `batch_size` x `columns` texts of `length` tokens through `model` (a
    SentenceTransformer in training mode); the fastest of `repeats` after one warm-up. Gradients are cleared after."""
    word = "text "
    texts = [word * length] * (batch_size * columns)
    features = model.tokenize(texts)
    features = {
        k: v[:, :length].to(model.device) if hasattr(v, "dim") and v.dim() == 2 else v for k, v in features.items()
    }
    best = float("inf")
    model.train()
    for i in range(repeats + 1):
        start = time.perf_counter()
        out = model(dict(features))["sentence_embedding"]
        out.float().pow(2).mean().backward()
        if i:
            best = min(best, time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return best


def plan_steps(stages, step_seconds_per_column: float, usable_seconds: float) -> list[int]:
    """Every stage's max_steps scaled by one factor, so that the steps' measured cost fills `usable_seconds`."""
    cost = sum(s.max_steps * stage_columns(s) * step_seconds_per_column for s in stages)
    if cost <= 0 or usable_seconds <= 0:
        raise ValueError(f"no time for training: {usable_seconds:.0f} s usable, planned cost {cost:.0f} s")
    factor = usable_seconds / cost
    return [max(1, round(s.max_steps * factor)) for s in stages]


def apply_budget(cfg, budget_minutes: float, model, elapsed_seconds: float = 0.0):
    """`cfg` with its stages' max_steps fitted to `budget_minutes` (see the module docstring); the plan is persisted
    in `cfg.output_dir/budget.json` and reused as it is by a resumed run.

    Raises:
        ValueError: a bad budget, or a resumed run asked for another budget than its plan's.
    """
    if budget_minutes <= 0:
        raise ValueError(f"--budget-minutes must be > 0, got {budget_minutes}")
    path = Path(cfg.output_dir) / PLAN_FILE
    if path.is_file():
        plan = json.loads(path.read_text())
        if plan["budget_minutes"] != budget_minutes:
            raise ValueError(
                f"{path} planned this run for {plan['budget_minutes']} minutes; it was resumed with "
                f"--budget-minutes {budget_minutes}. Resume with the same budget, or start a new output_dir."
            )
        logger.info("budget: resuming the plan of %s: steps %s", path, plan["max_steps"])
    else:
        first = cfg.stages[0]
        length = first.max_seq_length or cfg.max_seq_length
        columns = stage_columns(first)
        seconds = measure_step_seconds(model, first.batch_size, columns, length)
        usable = budget_minutes * 60 * (1 - RESERVE) - elapsed_seconds
        steps = plan_steps(cfg.stages, seconds / columns, usable)
        plan = {
            "budget_minutes": budget_minutes,
            "step_seconds": round(seconds, 2),
            "measured_shape": [first.batch_size, columns, length],
            "configured_max_steps": [s.max_steps for s in cfg.stages],
            "max_steps": steps,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(plan, indent=2) + "\n")
        logger.info(
            "budget: %.1f s per step at %s; %s steps fit %s min (configured %s)",
            seconds,
            plan["measured_shape"],
            steps,
            budget_minutes,
            plan["configured_max_steps"],
        )
    stages = [dataclasses.replace(s, max_steps=n) for s, n in zip(cfg.stages, plan["max_steps"])]
    return dataclasses.replace(cfg, stages=stages)
