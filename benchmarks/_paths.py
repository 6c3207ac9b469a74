"""Where the benchmarks read and write, and the set-up every benchmark process shares: the repository on `sys.path`
(its modules are imported by name) and the Hugging Face libraries offline. `_report`, `_model`, `_texts` and
`_memory` import it, so a benchmark that writes a `Report` has it done."""

import os
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CACHE = ROOT / "benchmarks" / ".cache"  # converted models (ignored by git)
RESULTS = ROOT / "benchmarks" / "results"
