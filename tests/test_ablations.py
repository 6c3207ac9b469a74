"""The ablation sweep builds the paper's variants from one base config."""

from eval.ablations import PAPER_POOLING, table, variants
from train.config import RunConfig, StageConfig


def test_variants_cover_the_papers_grid_and_stage_recipes():
    base = RunConfig(
        stages=[
            StageConfig(tasks=["r1"], max_steps=5),
            StageConfig(tasks=["r1", "cls"], max_steps=3, in_batch_negatives_for_non_retrieval=False),
        ]
    )
    runs = variants(base)
    grid = {(cfg.mask_type, cfg.pooling_mode) for name, cfg in runs.items() if not name.startswith("single")}
    assert grid == set(PAPER_POOLING)
    single = {name: cfg for name, cfg in runs.items() if name.startswith("single")}
    assert len(single) == 2
    for cfg in single.values():
        assert len(cfg.stages) == 1 and cfg.stages[0].max_steps == 8 and cfg.stages[0].tasks == ["r1", "cls"]
    assert {cfg.stages[0].in_batch_negatives_for_non_retrieval for cfg in single.values()} == {True, False}
    assert base.mask_type == "b" and base.pooling_mode == "latent_attention"  # the base is not mutated


def test_table_has_ours_beside_the_paper():
    scores = {"bidirectional-latent_attention": {"a": 0.5, "b": 0.7}}
    text = table(scores, ["a", "b"])
    assert "| bidirectional | 60.00 | - | - | 69.32 | 68.97 | 67.85 |" in text
    assert "| two-stage | 60.00 | 72.31 |" in text
