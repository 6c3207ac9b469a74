"""The server (`serve/`, Ray Serve) with dynamic batching on vs off, and corpus encoding (`corpus/`, Ray Data) with
1 vs 2 workers, measured side by side in one run on one local Ray instance.

    .venv/bin/python benchmarks/ray_throughput.py [--model PATH] [--clients 8] [--requests 8] [--rounds 6]
        [--num-texts 80] [--rows-per-file 10] [--corpus-rounds 2]
        [--name ray_throughput]

Serving: two deployments of the same model run at once on 127.0.0.1, one replica each with 1 CPU (1 torch thread):
`batched` (max_batch_size 32, 5 ms wait) and `unbatched` (max_batch_size 1). `--clients` threads each send
`--requests` one-query requests (an instructed query, as a RAG system sends them) over keep-alive HTTP; the modes
alternate `--rounds` times (batched, unbatched, batched, ...). Reported per mode: requests/s (requests / wall time of
its rounds), p50 / p95 latency, failed requests, and the largest batch the replica saw; then the batched / unbatched
ratio overall and per round.

Corpus: the serve apps are shut down, then `encode_corpus` embeds `--num-texts` synthetic passages (20-60 words)
with 1 worker (2 torch threads) and with 2 workers (1 thread each), alternating for `--corpus-rounds` rounds, each
into a fresh folder. Reported: end-to-end texts/s (including starting the actors and loading the model in each) and
steady texts/s (rows / time from the first part's start to the last part's end: every replica is loaded before the
first part is handed out), the 2 / 1 ratios per round, and whether all runs wrote the same vectors.

The model defaults to the bundled SmolLM2-135M converted to NV-Embed (512 latents), cached under benchmarks/.cache;
any SentenceTransformer folder works (`ray_throughput_minilm.txt`: the bundled all-MiniLM-L6-v2, 22M parameters,
whose cheaper forward leaves more of each request to the server itself).
"""

import argparse
import collections
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

from _model import converted_folder  # noqa: E402
from _report import Report  # noqa: E402


WORDS = (
    "gzip compresses files with the deflate algorithm network time protocol daemon keeps clocks in sync python email "
    "package builds and parses messages a library for parsing command line options the quick brown fox jumps over "
    "lazy dog kernel module loads firmware at boot"
).split()
QUERIES = [
    "how do I compress a folder",
    "which daemon keeps the clock right",
    "parse command line flags in python",
    "load firmware when the kernel boots",
    "build an email message with attachments",
    "what does the deflate algorithm do",
]
TASK = "Given a question, retrieve passages that answer it"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(url: str, model: str, clients: int, requests: int) -> tuple[float, list[float], list[str]]:
    """`clients` threads x `requests` requests (bounded; each thread ends after its last); (wall s, latencies of
    the successful ones, what went wrong with the others)."""
    import http.client
    from urllib.parse import urlsplit

    latencies, failures, lock = [], [], threading.Lock()
    parts = urlsplit(url)

    def one_client(k: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)  # keep-alive
        for r in range(requests):
            body = {"model": model, "input": QUERIES[(k + r) % len(QUERIES)], "instruction": TASK}
            start = time.perf_counter()
            try:
                connection.request("POST", f"{parts.path}/v1/embeddings", json.dumps(body),
                                   {"Content-Type": "application/json"})  # fmt: skip
                response = connection.getresponse()
                payload = json.loads(response.read())
                ok = response.status == 200 and len(payload["data"]) == 1
                error = None if ok else f"HTTP {response.status}: {str(payload)[:80]}"
            except (OSError, http.client.HTTPException, ValueError) as exception:
                ok, error = False, repr(exception)[:80]
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
            elapsed = time.perf_counter() - start
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    failures.append(error)
        connection.close()

    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, failures


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else float("nan")


def bench_serving(report: Report, model: str, args) -> None:
    import urllib.request

    from ray import serve

    from serve.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    modes = {"batched": dict(max_batch_size=32, batch_wait_timeout_s=0.005), "unbatched": dict(max_batch_size=1)}
    for mode, options in modes.items():
        app = build_app(model, num_cpus=1, model_name="nvembed", threads=1, **options)
        serve.run(app, name=mode, route_prefix=f"/{mode}")
    url = {mode: f"http://127.0.0.1:{port}/{mode}" for mode in modes}
    for mode in modes:  # warm-up: first requests pay for lazy initialisation
        load(url[mode], "nvembed", 2, 3)
    results = {mode: {"wall": 0.0, "latencies": [], "failures": [], "rounds": []} for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            wall, latencies, failures = load(url[mode], "nvembed", args.clients, args.requests)
            results[mode]["rounds"].append(len(latencies) / wall)
            results[mode]["wall"] += wall
            results[mode]["latencies"] += latencies
            results[mode]["failures"] += failures
    report(f"## serving: {args.clients} clients x {args.requests} one-query requests x {args.rounds} rounds per mode")
    report(f"{'mode':>10}  {'requests':>8}  {'failed':>6}  {'req/s':>6}  {'p50 ms':>7}  {'p95 ms':>7}  "
           f"{'max batch':>9}")  # fmt: skip
    rates = {}
    for mode, r in results.items():
        with urllib.request.urlopen(f"{url[mode]}/health", timeout=30) as response:
            health = json.loads(response.read())
        done = len(r["latencies"])
        rates[mode] = done / r["wall"]
        p50, p95 = percentile(r["latencies"], 50) * 1000, percentile(r["latencies"], 95) * 1000
        report(
            f"{mode:>10}  {done:>8}  {len(r['failures']):>6}  {rates[mode]:>6.1f}  {p50:>7.1f}  {p95:>7.1f}  "
            f"{health['max_batch_size_seen']:>9}"
        )
        for reason, count in collections.Counter(r["failures"]).most_common(5):
            report(f"    {mode} failed {count}x: {reason}")
    per_round = [b / u for b, u in zip(results["batched"]["rounds"], results["unbatched"]["rounds"])]
    report(
        f"batching on / off: x{rates['batched'] / rates['unbatched']:.2f} requests/s overall; per round "
        f"{', '.join(f'x{r:.2f}' for r in per_round)} (median x{statistics.median(per_round):.2f})"
    )
    serve.shutdown()


def write_corpus(path: Path, num_texts: int) -> Path:
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(num_texts):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            f.write(json.dumps({"id": f"p{i}", "text": text}) + "\n")
    return path


def bench_corpus(report: Report, model: str, args) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    from corpus.encode import EncodeConfig, encode_corpus

    report()
    report(f"## corpus: {args.num_texts} synthetic passages of 20-60 words, {args.rows_per_file} rows per part, "
           f"batch 32; 1 and 2 workers alternate, {args.corpus_rounds} rounds")  # fmt: skip
    report(f"{'round':>5}  {'workers':>7}  {'threads each':>12}  {'rows':>5}  {'wall s':>6}  "
           f"{'end-to-end texts/s':>18}  {'steady texts/s':>14}  {'replicas used':>13}")  # fmt: skip
    rates, vectors = {1: [], 2: []}, {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", args.num_texts)
        cfg = EncodeConfig(model=model, inputs=[str(corpus)], id_column="id", rows_per_file=args.rows_per_file)
        for round_ in range(args.corpus_rounds):
            for workers in (1, 2):
                out = Path(tmp) / f"out-{round_}-{workers}"
                start = time.perf_counter()
                result = encode_corpus(cfg, out, num_workers=workers, cpus_per_worker=2 // workers)
                wall = time.perf_counter() - start
                first = min(result["finished_at"][i] - result["part_seconds"][i] for i in result["encoded"])
                steady = result["rows"] / (max(result["finished_at"].values()) - first)
                rates[workers].append((result["rows"] / wall, steady))
                table = pq.read_table(sorted(out.glob("part-*.parquet")))
                vectors[round_, workers] = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
                report(f"{round_:>5}  {workers:>7}  {2 // workers:>12}  {result['rows']:>5}  {wall:>6.1f}  "
                       f"{rates[workers][-1][0]:>18.1f}  {steady:>14.1f}  {len(result['workers']):>13}")  # fmt: skip
    end_to_end = [two[0] / one[0] for one, two in zip(rates[1], rates[2])]
    steady = [two[1] / one[1] for one, two in zip(rates[1], rates[2])]
    spread = max(float(np.abs(v - vectors[0, 1]).max()) for v in vectors.values())
    report(
        f"2 vs 1 workers, per round: end-to-end {', '.join(f'x{r:.2f}' for r in end_to_end)}; "
        f"steady {', '.join(f'x{r:.2f}' for r in steady)}"
    )
    report(f"max |difference| between the vectors of all runs: {spread:.2e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a SentenceTransformer folder; default: converted SmolLM2-135M")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=8, help="per client and round")
    parser.add_argument("--rounds", type=int, default=6, help="short: load changes hit both modes")
    parser.add_argument("--num-texts", type=int, default=80)
    parser.add_argument("--rows-per-file", type=int, default=10)
    parser.add_argument("--corpus-rounds", type=int, default=2)
    parser.add_argument("--name", default="ray_throughput", help="results file: benchmarks/results/NAME.txt")
    args = parser.parse_args(argv)
    import ray

    model = str(Path(args.model).resolve()) if args.model else str(converted_folder())
    report = Report(args.name)
    report(f"model: {model}")
    report("Ray: a local instance with num_cpus=2 (all of this machine's 2 cores, which other jobs share)")
    report(f"niceness of this run: {os.nice(0)} (19 gets only the CPU time that jobs at niceness 0 leave)")
    report()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    bench_serving(report, model, args)
    bench_corpus(report, model, args)
    ray.shutdown()
    report.save()


if __name__ == "__main__":
    main()
