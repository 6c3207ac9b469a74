"""benchmarks/: every script imports and parses its arguments (a broken import or option shows up here, not in the
middle of a long run). The timings themselves are never asserted."""

import subprocess
import sys
from pathlib import Path

import pytest


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def test_every_benchmark_is_listed_in_the_readme():
    readme = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    assert SCRIPTS and [s for s in SCRIPTS if f"`{s}`" not in readme] == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_imports_and_shows_help(script):
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")
