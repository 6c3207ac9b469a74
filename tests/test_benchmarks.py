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


def test_dev_check_ood_probe_scores_manual_classification_and_same_manual_pairs(monkeypatch):
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import dev_check

    import eval.ood

    # three manuals of 10 paragraphs; the first 8 of each fit the classifier, the last 2 are scored
    rows = [{"text": f"{m} {i}", "label": m} for m in ("gzip", "sed", "grep") for i in range(10)]
    monkeypatch.setattr(eval.ood, "build", lambda: {"info_manual": {"dev": rows}})

    class Model:  # a vector per manual (with a little noise): classes and pairs perfectly separable
        def __init__(self, separable):
            self.separable = separable

        def encode(self, texts, prompt=None, **kwargs):
            rng = np.random.default_rng(0)
            axis = {"gzip": 0, "sed": 1, "grep": 2}
            x = rng.normal(size=(len(texts), 3)) * 0.05
            if self.separable:
                x[np.arange(len(texts)), [axis[t.split()[0]] for t in texts]] += 1.0
            else:
                x += rng.normal(size=(len(texts), 3))
            return x / np.linalg.norm(x, axis=1, keepdims=True)

    good = dev_check.ood_probe(Model(True), prompt=None)
    assert good == {"ood_manual_acc": 1.0, "ood_pair_ap": pytest.approx(1.0)}
    noise = dev_check.ood_probe(Model(False), prompt=None)
    assert noise["ood_pair_ap"] < 0.7 and noise["ood_manual_acc"] < 1.0  # chance AP is ~0.31 (same-manual share)
