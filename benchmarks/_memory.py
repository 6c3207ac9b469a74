"""Memory measured per point: each point runs in a fresh Python process (`run_child`), so its peak resident memory is
its own, and `forward_memory` subtracts what loading the model took."""

import json
import resource
import subprocess
import sys
from pathlib import Path

from _paths import ROOT


def run_child(script: Path, args: list[str], timeout: float = 900) -> dict:
    """Run `script ARGS` (ARGS hold `--child ...`) in a fresh Python process; return the JSON line it prints last."""
    cmd = [sys.executable, str(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def maxrss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def forward_memory(result: dict) -> str:
    """Memory a child's work needed beyond the loaded model: GPU peak allocation, or CPU peak RSS - RSS after load.

    On CPU, when the peak RSS is the one reached while loading (>=), the work's own peak is below it and unresolved.
    """
    if "gpu_peak_mib" in result:
        return f"{result['gpu_peak_mib']:.0f}"
    value = result["peak_rss_mib"] - result["base_rss_mib"]
    if result.get("load_peak_mib", 0) >= result["peak_rss_mib"]:
        return f"<={value:.0f}"
    return f"{value:.0f}"
