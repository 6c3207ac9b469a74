"""How encoding time and peak memory grow with input length and corpus size, and what length-sorted batching saves.

    .venv/bin/python benchmarks/scaling.py                                   # CPU: lengths 128..4096, corpus 8/32
    .venv/bin/python benchmarks/scaling.py --lengths 128,512,2048,4096,8192  # CPU up to 8k (several more minutes)
    .venv/bin/python benchmarks/scaling.py --device cuda --lengths 128,512,2048,8192,32768 --corpus-sizes 256,1024,4096

1. Length: one fresh process per point encodes one text of L tokens (batch 1) with NVEmbedModel.forward; it reports
   the median time and its peak memory: on CPU the process's peak RSS (`getrusage` maxrss) minus its RSS after
   loading the model and one 16-token forward (weights are paged in lazily), i.e. what the forward needed; on a GPU
   `torch.cuda.max_memory_allocated`.
2. Corpus size: one fresh process per point runs `model.encode` over N texts of mixed lengths (batch 8).
3. Sorted vs unsorted batching, in this process: `encode` (sorts texts by length, so a batch pads little) against
   the same `tokenize` + forward on batches in the corpus's original order, interleaved; outputs compared.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _memory import forward_memory, maxrss_mib, rss_mib, run_child
from _model import converted_folder, load_model, pick_dtype
from _report import Report
from _texts import mixed_corpus, token_batch
from _timing import interleaved, median, set_threads, spread, sync


def child(args) -> None:
    device, dtype = args.device, pick_dtype(args.device)
    model = load_model(converted_folder(), device, dtype)
    with torch.no_grad():  # touch every weight first: safetensors maps them lazily, so RSS grows on first use
        model(**token_batch(model.tokenizer, 1, 16, device))
    base_rss = rss_mib()
    load_peak = maxrss_mib()  # loading may peak above the forward: then maxrss cannot resolve it
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated() / 2**20
    kind, value = args.child
    value = int(value)
    times = []
    if kind == "length":
        batch = token_batch(model.tokenizer, 1, value, device)
        runs = args.repeats if value <= 1024 else 1
        if value <= 512:
            with torch.no_grad():
                model(**batch)
        for _ in range(runs):
            sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                model(**batch)
            sync(device)
            times.append(time.perf_counter() - t0)
        tokens = value
    else:
        texts = mixed_corpus(model.tokenizer, value, 16, 256)
        tokens = sum(len(model.tokenizer(t)["input_ids"]) for t in texts)
        model.encode(texts[:8], batch_size=8)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        model.encode(texts, batch_size=8)
        sync(device)
        times.append(time.perf_counter() - t0)
    result = {"times": times, "tokens": tokens, "base_rss_mib": base_rss, "load_peak_mib": load_peak}
    result["peak_rss_mib"] = maxrss_mib()
    if device.startswith("cuda"):
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20 - base_gpu
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--lengths", default="128,512,2048,4096")
    parser.add_argument("--corpus-sizes", default="8,32")
    parser.add_argument("--sort-corpus", type=int, default=24, help="texts in the sorted-vs-unsorted comparison")
    parser.add_argument("--repeats", type=int, default=3, help="forwards per length point (1 above 1024 tokens)")
    parser.add_argument("--sort-repeats", type=int, default=2, help="interleaved runs of sorted and unsorted")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.child:
        return child(args)

    device = args.device
    report = Report("scaling", device)
    converted_folder()
    script = Path(__file__).resolve()
    common = ["--device", device, "--repeats", str(args.repeats)]
    mem_label = "GPU peak alloc" if device.startswith("cuda") else "peak RSS - RSS after load + a 16-token forward"

    report(f"1. input length (batch 1, one fresh process per point; memory = {mem_label}):")
    report("   tokens | time/forward (median [min-max]) | tokens/s | memory MiB | time ratio vs previous (length x)")
    previous = None
    for length in [int(x) for x in args.lengths.split(",")]:
        r = run_child(script, common + ["--child", "length", str(length)])
        t = median(r["times"])
        memory = forward_memory(r)
        growth = f"{t / previous[1]:.2f}x for {length / previous[0]:.0f}x tokens" if previous else ""
        cells = f"{t:8.3f} s {spread(r['times']):>19s} | {length / t:8.0f} | {memory:>10s}"
        report(f"   {length:6d} | {cells} | {growth}")
        previous = (length, t)
    report()

    report(f"2. corpus size (`encode`, batch 8, texts of 16-256 tokens; memory = {mem_label}):")
    report("   texts | tokens | time | texts/s | tokens/s | memory MiB")
    for n in [int(x) for x in args.corpus_sizes.split(",")]:
        r = run_child(script, common + ["--child", "corpus", str(n)])
        t = r["times"][0]
        memory = forward_memory(r)
        report(f"   {n:5d} | {r['tokens']:6d} | {t:7.2f} s | {n / t:7.2f} | {r['tokens'] / t:8.0f} | {memory:>10s}")
    report()

    model = load_model(converted_folder(), device, pick_dtype(device))
    texts = mixed_corpus(model.tokenizer, args.sort_corpus, 16, 256, seed=1)
    batch_size = 8

    def unsorted():
        chunks, padded = [], 0
        for start in range(0, len(texts), batch_size):
            batch = {k: v.to(device) for k, v in model.tokenize(texts[start : start + batch_size]).items()}
            padded += batch["input_ids"].numel()
            with torch.no_grad():
                chunks.append(model(**batch)["sentence_embeddings"])
        return torch.cat(chunks), padded

    def padded_tokens(order):
        return sum(
            model.tokenize([texts[i] for i in order[s : s + batch_size]])["input_ids"].numel()
            for s in range(0, len(order), batch_size)
        )

    real = sum(len(model.tokenizer(t)["input_ids"]) for t in texts)
    sorted_order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    diff = (model.encode(texts, batch_size=batch_size) - unsorted()[0]).abs().max().item()
    times = interleaved(
        {"sorted (encode)": lambda: model.encode(texts, batch_size=batch_size), "unsorted": unsorted},
        args.sort_repeats,
        warmup=0,
        device=device,
    )
    t = {k: median(v) for k, v in times.items()}
    report(f"3. length-sorted vs original-order batching: {len(texts)} texts of 16-256 tokens, batch {batch_size}")
    report(
        f"   real tokens {real}; tokens incl. padding: sorted {padded_tokens(sorted_order)},"
        f" unsorted {padded_tokens(list(range(len(texts))))}"
    )
    for k, v in times.items():
        report(f"   {k:16s} {t[k]:7.2f} s {spread(v)}")
    ratio = t["unsorted"] / t["sorted (encode)"]
    report(f"   unsorted / sorted time: {ratio:.2f}x; max abs diff of embeddings {diff:.1e}")
    report.save()


if __name__ == "__main__":
    sys.exit(main())
