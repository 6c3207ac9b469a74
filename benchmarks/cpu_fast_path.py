"""int8 dynamic quantization of the linear layers vs fp32 on CPU: texts/s, drift, dev scores, side by side in one run.

    .venv/bin/python benchmarks/cpu_fast_path.py --model artifacts/nvembed-untrained [--threads 1] [--dev]

Two copies of one SentenceTransformer folder encode identical texts through `SentenceTransformer.encode` (what the
server and the corpus encoder run), interleaved (A, B, A, B, ...): fp32 as loaded, and the same model after
`torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)` (int8 weights, activations quantized
per batch at run time, fp32 accumulation). Speed: 32 texts of ~64 tokens (batch 32) and 8 texts of ~512 tokens
(batch 8), cut from real text. Drift: 1 - cos(fp32, int8) over 64 texts of 16-512 tokens, and whether each text's
nearest neighbour among the others is the same. `--dev`: the demo's dev scores (`train.monitor.dev_scores`, 100
queries per task, max_seq_length 64 as dev_check.py) of both.

The 1.3x / 0.5-dev-point bar (issue 31) decides whether `--quantize int8` is offered by the server and the corpus
encoder; the result file says which way it went.
"""

import argparse
import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from _report import Report, cpu_flags
from _texts import mixed_corpus, text_token_ids
from _timing import interleaved, median, set_threads, spread


def texts_of(tokenizer, count: int, tokens: int, offset: int = 0) -> list[str]:
    """`count` texts cut from real text, each decoding a window of `tokens - 1` tokens (the tokenizer adds BOS)."""
    ids = text_token_ids(tokenizer, offset + count * tokens + tokens)
    return [tokenizer.decode(ids[offset + k * tokens : offset + (k + 1) * tokens - 1]) for k in range(count)]


def quantized(model, skip: str | None = None):
    """A copy of `model` with its nn.Linear layers dynamically quantized to int8: all of them, per-tensor (torch's
    default), or, with `skip`, per output channel and leaving out the layers whose name contains `skip`."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    spec = {torch.nn.Linear}
    if skip:
        names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and skip not in n]
        spec = {name: per_channel_dynamic_qconfig for name in names}
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)


def mean(row: dict[str, float]) -> float:
    return 100 * sum(row.values()) / len(row)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a SentenceTransformer folder")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dev", action="store_true", help="also the dev scores of each (minutes per model)")
    parser.add_argument("--skip", default="down_proj", help="the third variant leaves these linear layers in fp32")
    parser.add_argument("--save-as", default=None, help="results file name under benchmarks/results/ (no .txt)")
    args = parser.parse_args()
    set_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    report = Report("cpu_fast_path")
    report(f"cpu flags: {cpu_flags(('avx2', 'avx512f', 'avx512_vnni', 'amx_int8'))}")
    report(f"torch quantized engine: {torch.backends.quantized.engine}")
    folder = Path(args.model)
    report(f"model: {folder}")
    fp32 = SentenceTransformer(str(folder), device="cpu", trust_remote_code=True).eval()
    variants = {
        "fp32": fp32,
        "int8": quantized(fp32).eval(),
        f"int8-no-{args.skip}": quantized(fp32, args.skip).eval(),
    }
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in fp32.modules())
    for name, m in list(variants.items())[1:]:
        n_quant = sum(type(m).__name__ == "Linear" and "quantized" in type(m).__module__ for m in m.modules())
        report(f"{name}: {n_quant} of {n_linear} linear layers quantized")

    tokenizer = fp32.tokenizer
    report(f"\nspeed: SentenceTransformer.encode, median [min-max] of {args.repeats} interleaved runs")
    speedups = {}
    for tokens, count in ((64, 32), (512, 8)):
        texts = texts_of(tokenizer, count, tokens)
        lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
        calls = {name: (lambda m=m: m.encode(texts, batch_size=count)) for name, m in variants.items()}
        times = interleaved(calls, args.repeats)
        report(f"  {count} texts of {min(lengths)}-{max(lengths)} tokens (batch {count}):")
        for name in variants:
            speedups.setdefault(name, {})[tokens] = median(times["fp32"]) / median(times[name])
            report(f"    {name}: {median(times[name]):.3f} s {spread(times[name])}  "
                   f"{count / median(times[name]):.1f} texts/s  ({speedups[name][tokens]:.2f}x fp32)")  # fmt: skip

    corpus = mixed_corpus(tokenizer, 64, 16, 512, seed=1)
    vectors = {name: m.encode(corpus, batch_size=8, convert_to_tensor=True) for name, m in variants.items()}

    def neighbours(v: torch.Tensor) -> torch.Tensor:
        sims = v @ v.T
        sims.fill_diagonal_(-2)
        return sims.argmax(dim=-1)

    report(f"\ndrift from fp32 over {len(corpus)} texts of 16-512 tokens (encode, batch 8, padded):")
    for name in list(variants)[1:]:
        drift = 1 - F.cosine_similarity(vectors["fp32"], vectors[name], dim=-1)
        agree = (neighbours(vectors["fp32"]) == neighbours(vectors[name])).float().mean()
        report(f"  {name}: 1 - cos max {drift.max():.2e}, mean {drift.mean():.2e}; nearest-neighbour agreement "
               f"{100 * agree:.0f}%")  # fmt: skip

    scores = {}
    if args.dev:
        from train.monitor import dev_scores

        report("\ndev scores (train.monitor.dev_scores, 100 queries per task, max_seq_length 64), x100:")
        for name, m in variants.items():
            m.max_seq_length = 64
            scores[name] = dev_scores(m, instructions=True, limit=100)
        tasks = list(scores["fp32"])
        report("  | variant | " + " | ".join(tasks) + " | mean |")
        for name, row in scores.items():
            report(f"  | {name} | " + " | ".join(f"{100 * row[t]:.1f}" for t in tasks) + f" | {mean(row):.1f} |")

    report("\nverdict (bar: over 1.3x fp32's texts/s at both lengths, under 0.5 dev points lost):")
    for name in list(variants)[1:]:
        fast = min(speedups[name].values())
        lost = mean(scores["fp32"]) - mean(scores[name]) if scores else None
        shown = f"{lost:+.1f} dev points lost" if lost is not None else "dev scores not measured"
        passes = fast > 1.3 and lost is not None and lost < 0.5
        report(f"  {name}: {fast:.2f}x at the slower length, {shown} -> {'pays' if passes else 'does not pay'}")
    report.save(args.save_as)


if __name__ == "__main__":
    main()
