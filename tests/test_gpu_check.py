"""`benchmarks/gpu_check.py --dry-run`: the GPU check's code on CPU at tiny sizes, so it does not rot between GPU
leases (a 1-layer conversion, 2 training steps, 16/32-token encodes). The server check (Ray start-up) is left to
`python benchmarks/gpu_check.py --dry-run` by hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~20 s alone on 2 cores (a 1-layer conversion of the real backbone): not in make test-fast
@pytest.mark.parametrize("checks", ["env,cuda_tests,train_steps,encode"])
def test_dry_run_passes_every_check_and_writes_its_results(tmp_path, checks):
    output = tmp_path / "dry_run.json"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--only", checks, "--output", str(output)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["dry_run"] and results["failed"] == []
    assert list(results["checks"]) == checks.split(",")
    steps = results["checks"]["train_steps"]
    assert steps["lora"] and steps["gradient_checkpointing"] and len(steps["losses"]) == 3
    assert steps["achieved_tflops"] > 0
    encode = results["checks"]["encode"]
    assert {"16_sdpa", "16_eager", "32_sdpa", "32_eager"} <= set(encode)
    assert (tmp_path / "dry_run.txt").read_text().startswith("$ ")


def test_a_failing_check_makes_the_exit_status_non_zero(tmp_path):
    output = tmp_path / "out.json"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--only", "env", "--output", str(output)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    # Without a GPU the real (not dry) run's env check fails; with one it passes.
    import torch

    assert (proc.returncode == 0) == torch.cuda.is_available(), proc.stdout[-2000:]
    assert json.loads(output.read_text())["checks"]["env"]["status"] == (
        "ok" if torch.cuda.is_available() else "failed"
    )


def test_every_cuda_marked_test_is_in_the_file_the_gpu_check_runs():
    """The check runs one file, not the whole suite: a CUDA test written elsewhere would never run on a GPU lease."""
    import ast

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import CUDA_TESTS

    def marks_cuda(node) -> bool:
        return any(isinstance(n, ast.Attribute) and n.attr == "cuda" for n in ast.walk(node))

    marked = set()
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        module_mark = [s for s in tree.body if isinstance(s, ast.Assign) and "pytestmark" in ast.unparse(s.targets[0])]
        decorated = [
            d for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.ClassDef)) for d in f.decorator_list
        ]
        if any(marks_cuda(node) for node in module_mark + decorated):
            marked.add(path.relative_to(ROOT).as_posix())
    assert marked == {CUDA_TESTS}
