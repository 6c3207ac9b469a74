"""bf16 vs fp32 inference: speed, and how far the bf16 embeddings drift from the fp32 ones.

    .venv/bin/python benchmarks/precision.py                                       # CPU: batch 2 x 32 tokens
    .venv/bin/python benchmarks/precision.py --device cuda --batch-size 32 --length 512 --repeats 20

Two copies of the converted SmolLM2-135M NV-Embed model (fp32, and the same weights cast to bf16) encode identical
batches, interleaved. The drift is 1 - cosine(fp32 embedding, bf16 embedding) over a set of real texts of mixed
lengths (with padding), encoded with `encode`. On a CPU without avx512_bf16 / amx_bf16, bf16 matmuls are emulated and
expected to be slower than fp32; the relevant CPU flags are printed.
"""

import argparse
import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from _model import converted_folder, load_model
from _report import Report, cpu_flags
from _texts import mixed_corpus, token_batch
from _timing import interleaved, median, set_threads, spread


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--texts", type=int, default=8, help="texts for the cosine comparison")
    parser.add_argument("--max-text-tokens", type=int, default=64, help="longest text in the cosine comparison")
    parser.add_argument("--model", default=None, help="NV-Embed folder (default: the converted, untrained model)")
    parser.add_argument("--save-as", default=None, help="results file name under benchmarks/results/ (no .txt)")
    args = parser.parse_args()
    set_threads(args.threads)

    device = args.device
    report = Report("precision", device)
    flags = cpu_flags()
    native = flags["avx512_bf16"] or flags["amx_bf16"]
    if device == "cpu":
        report(
            f"CPU bf16 support: avx512_bf16={flags['avx512_bf16']}, amx_bf16={flags['amx_bf16']}"
            f" -> {'native bf16 matmuls' if native else 'no native bf16: expect bf16 to be slower than fp32'}"
        )
        try:
            report(f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}")
        except AttributeError:
            pass
    folder = Path(args.model) if args.model else converted_folder()
    report(f"model: {folder}")
    fp32 = load_model(folder, device, torch.float32)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    bf16.tokenizer = fp32.tokenizer

    batch = token_batch(fp32.tokenizer, args.batch_size, args.length, device)

    def run(model):
        def fn():
            with torch.no_grad():
                return model(**batch)["sentence_embeddings"]

        return fn

    times = interleaved({"fp32": run(fp32), "bf16": run(bf16)}, args.repeats, warmup=1, device=device)
    t = {k: median(v) for k, v in times.items()}
    n_tokens = args.batch_size * args.length
    report(f"speed: batch {args.batch_size} x {args.length} tokens, median [min-max] of {args.repeats} interleaved")
    for k, v in times.items():
        report(f"  {k}: {t[k]:.3f} s {spread(v)}  {n_tokens / t[k]:.0f} tokens/s")
    verdict = "bf16 faster" if t["bf16"] < t["fp32"] else "bf16 slower"
    report(f"  bf16 / fp32 time: {t['bf16'] / t['fp32']:.2f}x ({verdict})")
    report()

    texts = mixed_corpus(fp32.tokenizer, args.texts, 16, args.max_text_tokens, seed=2)
    a = fp32.encode(texts, batch_size=8)
    b = bf16.encode(texts, batch_size=8)
    drift = 1 - F.cosine_similarity(a, b.float(), dim=-1)
    report(f"drift over {len(texts)} texts of 16-{args.max_text_tokens} tokens (encode, batch 8, padded):")
    report(f"  1 - cos(fp32, bf16): max {drift.max().item():.2e}, mean {drift.mean().item():.2e}")
    report(f"  max abs diff of the normalized embeddings: {(a - b.float()).abs().max().item():.2e}")
    # Ranking agreement: does bf16 change which text is nearest to which?
    nearest_fp32 = (a @ a.T).fill_diagonal_(-2).argmax(dim=1)
    nearest_bf16 = (b.float() @ b.float().T).fill_diagonal_(-2).argmax(dim=1)
    report(f"  nearest-neighbour agreement fp32 vs bf16: {(nearest_fp32 == nearest_bf16).float().mean().item():.0%}")
    report.save(args.save_as)


if __name__ == "__main__":
    main()
