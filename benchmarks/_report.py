"""The results file of a benchmark, headed by the exact command and the machine it ran on.

Every benchmark writes `benchmarks/results/<name>.txt` through `Report`, with the CPU model, cores, torch threads and
version, the load average before and after and the busiest other processes, so a number is never read without the
conditions that produced it.
"""

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from _paths import RESULTS, ROOT


SHARED_CPU_NOTE = (
    "NOTE: the CPU cores are shared with other jobs (a training run, tests); the load average below says how busy "
    "they were. Absolute times are pessimistic and noisy; the ratios come from interleaved runs (A, B, A, B, ...)."
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags(names=("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")) -> dict[str, bool]:
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        flags = set()
    return {name: name in flags for name in names}


def busy_processes(limit: int = 5) -> list[str]:
    """Other processes using the CPU right now (ps %CPU, i.e. averaged over their lifetime)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out:
        pid, pcpu, etime, args = line.split(None, 3)
        if int(pid) == os.getpid() or float(pcpu) < 5.0 or args.startswith("ps "):
            continue
        rows.append(f"pid {pid} {pcpu}% cpu (up {etime}): {args[:110]}")
    return rows[:limit]


class Report:
    """Collects the output of one benchmark; `save()` writes it with the command and the machine info on top."""

    def __init__(self, name: str, device: str = "cpu"):
        self.name = name
        self.device = device
        self.lines: list[str] = []
        self.start = time.perf_counter()
        self.load_before = os.getloadavg()
        self.busy_before = busy_processes()
        self.header = self._header()
        for line in self.header:
            print(line, flush=True)

    def _header(self) -> list[str]:
        argv = [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]
        command = ".venv/bin/python " + " ".join(shlex.quote(a) for a in argv)
        lines = [
            f"$ {command}",
            f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
            f"cpu: {cpu_model()}; os.cpu_count()={os.cpu_count()}, usable cores={len(os.sched_getaffinity(0))}",
            f"cpu flags: {cpu_flags()}",
            f"torch {torch.__version__}, torch threads={torch.get_num_threads()}, python {platform.python_version()}",
        ]
        try:
            import transformers

            lines[-1] += f", transformers {transformers.__version__}"
        except ImportError:
            pass
        if self.device.startswith("cuda"):
            lines.append(f"gpu: {torch.cuda.get_device_name()}")
        lines.append(f"load average before (1/5/15 min): {_fmt_load(self.load_before)}")
        lines += [f"  busy before: {p}" for p in self.busy_before] or ["  busy before: no other process above 5% cpu"]
        lines.append(SHARED_CPU_NOTE if self.device == "cpu" else "device: " + self.device)
        lines.append("")
        return lines

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def save(self, name: str | None = None) -> Path:
        """Write benchmarks/results/NAME.txt (default: the benchmark's own name)."""
        load_after = os.getloadavg()
        cores = len(os.sched_getaffinity(0))
        busy = max(self.load_before[0], load_after[0]) > 1.2 * cores
        footer = [
            "",
            f"load average after (1/5/15 min): {_fmt_load(load_after)}",
            *[f"  busy after: {p}" for p in busy_processes()],
            f"competing for the CPU: {'yes' if busy else 'little'}"
            f" (1-min load {self.load_before[0]:.1f} -> {load_after[0]:.1f} on {cores} cores)",
            f"wall time: {time.perf_counter() - self.start:.0f} s",
        ]
        for line in footer:
            print(line, flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{name or self.name}.txt"
        path.write_text("\n".join(self.header + self.lines + footer) + "\n")
        print(f"wrote {path.relative_to(ROOT)}", flush=True)
        return path


def _fmt_load(load) -> str:
    return " / ".join(f"{x:.2f}" for x in load)
