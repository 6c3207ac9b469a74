"""Shared helpers of the benchmarks: machine info, the results file, interleaved timing, the converted model.

Every benchmark writes `benchmarks/results/<name>.txt`, headed by the exact command and the machine it ran on
(CPU model, cores, torch threads and version, load average before and after, the busiest other processes), so a
number is never read without the conditions that produced it.
"""

import json
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


CACHE = ROOT / "benchmarks" / ".cache"
RESULTS = ROOT / "benchmarks" / "results"
SHARED_CPU_NOTE = (
    "NOTE: the CPU cores are shared with other jobs (a training run, tests); the load average below says how busy "
    "they were. Absolute times are pessimistic and noisy; the ratios come from interleaved runs (A, B, A, B, ...)."
)


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (and the children's, via OMP_NUM_THREADS). On an oversubscribed CPU one thread
    per process is much faster than two: OpenMP barriers wait for a thread the scheduler has descheduled."""
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def converted_folder(num_latents: int = 512, cross_dim_head: int | None = None) -> Path:
    """The bundled SmolLM2-135M converted to NV-Embed (latent attention), converted once and cached.

    `cross_dim_head` None is the converter's default (hidden / heads = 72 since commit b75a963); 576 is the release's
    8x-wide shape, which the results recorded before that commit used.
    """
    folder = CACHE / f"smollm2-135m-nvembed-l{num_latents}-dh{cross_dim_head or 'default'}"
    if not (folder / "model.safetensors").is_file():
        from convert_to_nvembed import convert

        convert(None, folder, num_latents=num_latents, cross_dim_head=cross_dim_head)
    return folder


def load_model(folder: Path, device: str = "cpu", dtype: torch.dtype = torch.float32, **kwargs):
    from modeling_nvembed import NVEmbedModel

    model = NVEmbedModel.from_pretrained(str(folder), dtype=dtype, **kwargs)
    return model.to(device).eval()


def pick_dtype(device: str) -> torch.dtype:
    """fp32 on CPU (no native bf16 on most CPUs: see precision.py), bf16 on a GPU."""
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


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


def interleaved(variants: dict, repeats: int, warmup: int = 1, device: str = "cpu") -> dict[str, list[float]]:
    """Time each callable `repeats` times, interleaved (A, B, A, B, ...) after `warmup` untimed calls each.

    Returns the list of seconds per variant; report the median.
    """
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    sync(device)
    times = {name: [] for name in variants}
    for i in range(repeats):
        # alternate the order each round so neither variant always runs right after the other's cache effects
        names = list(variants) if i % 2 == 0 else list(reversed(variants))
        for name in names:
            sync(device)
            t0 = time.perf_counter()
            variants[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """min-max of the repeats, in the median's unit, to show the noise next to it."""
    return f"[{min(xs):.3f}-{max(xs):.3f}]" if len(xs) > 1 else ""


def text_token_ids(tokenizer, n_tokens: int) -> list[int]:
    """`n_tokens` token ids of real English/Python text (this repository's README and modeling code), no specials."""
    text = (ROOT / "README.md").read_text() + (ROOT / "modeling_nvembed.py").read_text()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    while len(ids) < n_tokens:
        ids = ids + ids
    return ids[:n_tokens]


def mixed_corpus(tokenizer, n: int, min_tokens: int, max_tokens: int, seed: int = 0) -> list[str]:
    """`n` texts cut from real text, lengths log-uniform in [min_tokens, max_tokens] tokens."""
    rng = random.Random(seed)
    ids = text_token_ids(tokenizer, 20000)
    texts = []
    for _ in range(n):
        length = int(round(min_tokens * (max_tokens / min_tokens) ** rng.random()))
        start = rng.randrange(0, len(ids) - length)
        texts.append(tokenizer.decode(ids[start : start + length]).strip() or "text")
    return texts


def token_batch(tokenizer, batch_size: int, length: int, device: str = "cpu", offset: int = 0) -> dict:
    """A right-padded-free batch of `batch_size` rows of exactly `length` tokens (text, then EOS), with its pool mask.

    Rows are different windows of real text, so every variant sees the same realistic input.
    """
    ids = text_token_ids(tokenizer, offset + batch_size * length + length)
    rows = []
    for b in range(batch_size):
        start = offset + b * (length - 1)
        rows.append(ids[start : start + length - 1] + [tokenizer.eos_token_id])
    input_ids = torch.tensor(rows, device=device)
    attention_mask = torch.ones_like(input_ids)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pool_mask": attention_mask.clone()}


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
