"""Training by time (train.budget): steps fitted to a budget from a measured step, persisted for a resumed run."""

import json

import pytest

from train import budget, pipeline
from train.config import RunConfig, StageConfig


def _cfg(tmp_path, **overrides):
    stages = [
        StageConfig(tasks=["a", "b"], max_steps=20, batch_size=4, num_hard_negatives=0),
        StageConfig(tasks=["a", "b", "c"], max_steps=10, batch_size=4, num_hard_negatives=0),
    ]
    return RunConfig(output_dir=str(tmp_path / "run"), stages=stages, max_seq_length=16, **overrides)


def test_plan_scales_every_stage_by_one_factor_from_the_column_cost(tmp_path):
    stages = _cfg(tmp_path).stages  # stage 1: 2 columns, stage 2: 3 (label negatives)
    assert [budget.stage_columns(s) for s in stages] == [2, 3]
    # cost at 1 s per column: 20 * 2 + 10 * 3 = 70 s; 140 s usable -> twice the steps
    assert budget.plan_steps(stages, 1.0, 140.0) == [40, 20]
    assert budget.plan_steps(stages, 1.0, 35.0) == [10, 5]
    with pytest.raises(ValueError, match="no time for training"):
        budget.plan_steps(stages, 1.0, -5.0)


def test_budget_measures_persists_and_a_resume_keeps_the_plan(tmp_path, tiny_nvembed_folder, monkeypatch):
    cfg = _cfg(tmp_path, base_model=str(tiny_nvembed_folder), lora=False)
    model = pipeline.load_for_training(tiny_nvembed_folder, cfg, "cpu")
    seconds = budget.measure_step_seconds(model, 4, 2, 16)
    assert 0 < seconds < 30
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradients behind
    monkeypatch.setattr(budget, "measure_step_seconds", lambda *a, **k: 0.5)  # 0.25 s per column
    planned = budget.apply_budget(cfg, 1.0, model)  # 60 s x 0.85 = 51 s; cost 20*0.5 + 10*0.75 = 17.5 s -> x2.91
    assert [s.max_steps for s in planned.stages] == [58, 29]
    record = json.loads((tmp_path / "run" / "budget.json").read_text())
    assert record["max_steps"] == [58, 29] and record["configured_max_steps"] == [20, 10]
    monkeypatch.setattr(budget, "measure_step_seconds", lambda *a, **k: 5.0)  # a slower host on resume
    resumed = budget.apply_budget(cfg, 1.0, model=None)
    assert [s.max_steps for s in resumed.stages] == [58, 29]  # the plan, not a new measurement
    with pytest.raises(ValueError, match="planned this run for 1.0 minutes"):
        budget.apply_budget(cfg, 2.0, model=None)
    with pytest.raises(ValueError, match="must be > 0"):
        budget.apply_budget(cfg, 0, model=None)
