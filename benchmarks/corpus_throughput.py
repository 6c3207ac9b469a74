"""Texts/s of `corpus.encode` with 1 vs 2 worker processes, side by side, on this machine.

    python benchmarks/corpus_throughput.py [--num-texts 2000] [--shard-size 200] [--batch-size 32] [--model PATH]

The model defaults to the bundled all-MiniLM-L6-v2 (22M parameters, 6 layers): small enough for a CPU run of a few
minutes; NV-Embed folders go through the same code. Texts are synthetic passages of 20-60 words. Each setting runs
`encode_corpus` into a fresh folder and reports
  - end-to-end texts/s: all rows / wall time, including spawning the workers and loading the model in each;
  - steady texts/s: with P processes, rows of the shards finished after the P-th one / time from the P-th to the
    last shard file (from their mtimes), i.e. the rate once every worker is up (rough: few shards per worker).
Each worker gets cores // processes torch threads, so "1 process" uses all cores through intra-op threads.
The report goes to stdout and to benchmarks/results/corpus_throughput.txt, with the command at the top.
"""

import argparse
import json
import logging
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from corpus.encode import EncodeConfig, encode_corpus  # noqa: E402
from nvembed_defaults import peer_model_path  # noqa: E402


logger = logging.getLogger(__name__)
WORDS = (
    "gzip compresses files with the deflate algorithm network time protocol daemon keeps clocks in sync python email "
    "package builds and parses messages a library for parsing command line options the quick brown fox jumps over "
    "lazy "
    "dog kernel module loads firmware at boot"
).split()


def write_corpus(path: Path, num_texts: int) -> Path:
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(num_texts):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            f.write(json.dumps({"id": f"p{i}", "text": text}) + "\n")
    return path


def run(model: str, corpus: Path, out: Path, processes: int, shard_size: int, batch_size: int) -> dict:
    cfg = EncodeConfig(model=model, inputs=[str(corpus)], id_column="id", shard_size=shard_size, batch_size=batch_size)
    start = time.time()
    encode_corpus(cfg, out, num_processes=processes)
    wall = time.time() - start
    manifest = json.loads((out / "manifest.json").read_text())
    finished = sorted(((out / s["files"][-1]).stat().st_mtime, s["end"] - s["start"]) for s in manifest["shards"])
    rows = sum(r for _, r in finished)
    # The first `processes` shards finish about together (each worker's first); count from the last of them.
    span = finished[-1][0] - finished[processes - 1][0]
    steady = sum(r for _, r in finished[processes:]) / span if span > 0 else float("nan")
    return {"processes": processes, "rows": rows, "wall_s": wall, "end_to_end": rows / wall, "steady": steady}


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "unknown CPU"
    return f"{cores} cores ({cpu}); load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--num-texts", type=int, default=2000)
    parser.add_argument("--shard-size", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "corpus_throughput.txt"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])])
    model = args.model or str(peer_model_path())

    lines = [f"$ {command}", "", f"machine: {machine()} at start"]
    lines.append("note: the cores are shared with other jobs (a training run, tests), so absolute numbers are noisy")
    lines.append(f"model: {model}")
    lines.append(
        f"corpus: {args.num_texts} synthetic texts of 20-60 words; "
        f"shard size {args.shard_size}, batch {args.batch_size}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", args.num_texts)
        for processes in args.processes:
            out = Path(tmp) / f"out-{processes}"
            results.append(run(model, corpus, out, processes, args.shard_size, args.batch_size))
        same = all(
            subprocess.run(["cmp", "-s", str(p), str(Path(tmp) / f"out-{args.processes[0]}" / p.name)]).returncode == 0
            for r in results[1:]
            for p in sorted((Path(tmp) / f"out-{r['processes']}").glob("embeddings-*.npy"))
        )
    lines += ["", f"{'processes':>9}  {'rows':>6}  {'wall s':>7}  {'end-to-end texts/s':>18}  {'steady texts/s':>14}"]
    for r in results:
        lines.append(
            f"{r['processes']:>9}  {r['rows']:>6}  {r['wall_s']:>7.1f}  {r['end_to_end']:>18.1f}  {r['steady']:>14.1f}"
        )
    base = results[0]
    for r in results[1:]:
        lines.append(
            f"speed-up {r['processes']} vs {base['processes']} processes: "
            f"end-to-end x{r['end_to_end'] / base['end_to_end']:.2f}, steady x{r['steady'] / base['steady']:.2f}"
        )
    lines.append(f"embedding files byte-identical across process counts: {same}")
    lines.append(f"machine: {machine()} at end")
    report = "\n".join(lines) + "\n"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report)
    sys.stdout.write(report)


if __name__ == "__main__":
    main()
