"""Training throughput and peak memory of the demo recipe, with and without the cached loss and gradient checkpointing.

    .venv/bin/python benchmarks/train_throughput.py                  # CPU: the demo config, batch 16, 1 timed step
    .venv/bin/python benchmarks/train_throughput.py --steps 5 --rounds 2
    .venv/bin/python benchmarks/train_throughput.py --device cuda --batch-size 128 --max-seq-length 512 --steps 10

The model is set up as the pipeline does (`train.pipeline.load_for_training` with `train/configs/demo.yaml`:
SmolLM2-135M NV-Embed, 512 latents, LoRA r16 on the top 10 layers, max_seq_length 64), and the loss is
sentence-transformers' directly: `loss(features, None).backward(); optimizer.step()` on one synthetic batch of
(anchor with its instruction, positive, negative) texts cut from real text, identical for every variant.

Variants: plain = MultipleNegativesRankingLoss (the demo's stage-1 loss); cached = CachedMultipleNegativesRankingLoss
(GradCache, mini_batch_size 8); gc = gradient checkpointing; cached+gc. Each variant runs in a fresh process, so its
peak memory (CPU: peak RSS minus RSS after loading; GPU: max_memory_allocated) is its own. A process times one
warm-up step and then `--steps` steps; with `--rounds 2` the variants run again in reverse order (A B C D D C B A),
so background load hits them alike, and the median over all timed steps is reported.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from _memory import forward_memory, maxrss_mib, rss_mib, run_child
from _model import converted_folder
from _paths import ROOT
from _report import Report
from _texts import mixed_corpus
from _timing import median, set_threads, spread, sync


VARIANTS = {
    "plain": dict(cached_loss=False, gradient_checkpointing=False),
    "cached": dict(cached_loss=True, gradient_checkpointing=False),
    "gc": dict(cached_loss=False, gradient_checkpointing=True),
    "cached+gc": dict(cached_loss=True, gradient_checkpointing=True),
    # plain under bf16 autocast, as the trainer runs it where train.pipeline.bf16_available says yes (GPUs with bf16,
    # CPUs with AMX / avx512_bf16): is bf16 really the faster choice on this machine?
    "bf16": dict(cached_loss=False, gradient_checkpointing=False),
}


def child(args) -> None:
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from modeling_nvembed import format_instruction
    from nvembed_defaults import DEFAULT_QUERY_TASK
    from train.config import load_config
    from train.pipeline import bf16_available, load_for_training

    variant = VARIANTS[args.child]
    overrides = dict(output_dir=tempfile.mkdtemp(), mini_batch_size=args.mini_batch_size, **variant)
    if args.max_seq_length:
        overrides["max_seq_length"] = args.max_seq_length
    cfg = load_config(ROOT / "train" / "configs" / "demo.yaml", **overrides)
    device = args.device
    torch.manual_seed(0)
    model = load_for_training(converted_folder(cfg.num_latents), cfg, device)
    model.train()
    base_rss = rss_mib()
    load_peak = maxrss_mib()  # loading may peak above the forward: then maxrss cannot resolve it
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated() / 2**20

    scale = 1.0 / cfg.temperature
    if cfg.cached_loss:
        loss = CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=cfg.mini_batch_size)
    else:
        loss = MultipleNegativesRankingLoss(model, scale=scale)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-4)

    tokenizer = model[0].model.tokenizer
    n = args.batch_size
    texts = mixed_corpus(tokenizer, 3 * n, cfg.max_seq_length // 2, cfg.max_seq_length * 2, seed=3)
    columns = [texts[:n], texts[n : 2 * n], texts[2 * n :]]  # anchor, positive, negative
    prompts = [format_instruction(DEFAULT_QUERY_TASK), None, None]
    features = []
    for column, prompt in zip(columns, prompts):
        f = model.preprocess(column, prompt=prompt)
        features.append({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in f.items()})
    tokens = sum(int(f["attention_mask"].sum()) for f in features)

    # On CUDA every variant runs under bf16 autocast where the GPU has it (the trainer's choice there); on CPU only
    # the bf16 variant does, the others are fp32.
    use_bf16 = args.child == "bf16" or (device.startswith("cuda") and torch.cuda.is_bf16_supported())
    if args.child == "bf16" and not bf16_available(device):
        raise SystemExit(f"bf16 variant: {device} has no native bf16 (train.pipeline.bf16_available)")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=use_bf16):
            value = loss(features, None)
        value.backward()
        optimizer.step()
        return value.item()

    step()  # warm-up
    times = []
    for _ in range(args.steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    result = {
        "times": times,
        "tokens": tokens,
        "trainable": sum(p.numel() for p in params),
        "base_rss_mib": base_rss,
        "load_peak_mib": load_peak,
        "peak_rss_mib": maxrss_mib(),
        "max_seq_length": cfg.max_seq_length,
    }
    if device.startswith("cuda"):
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20 - base_gpu
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step (demo: 16)")
    parser.add_argument("--mini-batch-size", type=int, default=8, help="the cached loss's chunk (demo: 8)")
    parser.add_argument("--max-seq-length", type=int, default=None, help="default: the demo config's (64)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per process, after one warm-up step")
    parser.add_argument("--rounds", type=int, default=1, help="2: run the variants again in reverse order")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--save-as", default=None, help="results file name under benchmarks/results/ (no .txt)")
    args = parser.parse_args()
    set_threads(args.threads)
    if args.child:
        return child(args)

    report = Report("train_throughput", args.device)
    converted_folder()
    names = args.variants.split(",")
    report(
        f"demo config (train/configs/demo.yaml) via load_for_training; batch {args.batch_size} x (anchor, positive,"
        f" negative), mini_batch_size {args.mini_batch_size}, {args.steps} timed step(s) per process after 1"
        f" warm-up, {args.rounds} round(s); device {args.device}"
    )
    script = Path(__file__).resolve()
    common = [
        "--device",
        args.device,
        "--batch-size",
        str(args.batch_size),
        "--mini-batch-size",
        str(args.mini_batch_size),
        "--steps",
        str(args.steps),
    ]
    if args.max_seq_length:
        common += ["--max-seq-length", str(args.max_seq_length)]
    results = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            results[name].append(run_child(script, common + ["--child", name], timeout=3600))
            print(f"  {name}: {results[name][-1]}", flush=True)
    first = results[names[0]][0]
    report(
        f"trainable parameters {first['trainable'] / 1e6:.2f}M; max_seq_length {first['max_seq_length']};"
        f" real tokens per step {first['tokens']} (all three columns)"
    )
    memory_label = "GPU peak alloc MiB" if args.device.startswith("cuda") else "peak RSS - RSS after load, MiB"
    if not args.device.startswith("cuda"):
        report("  (CPU memory includes ~0.5 GiB of weights paged in on first use: safetensors maps them lazily)")
    report(f"  variant    | s/step (median [min-max]) | pairs/s | tokens/s | {memory_label} | time vs plain")
    base = None
    for name in names:
        times = [t for res in results[name] for t in res["times"]]
        t = median(times)
        memory = forward_memory(max(results[name], key=lambda res: res.get("gpu_peak_mib", res["peak_rss_mib"])))
        base = base or t
        report(
            f"  {name:10s} | {t:8.2f} s {spread(times):>15s} | {args.batch_size / t:7.2f}"
            f" | {first['tokens'] / t:8.0f} | {memory:>8s} | {t / base:.2f}x"
        )
    report.save(args.save_as)


if __name__ == "__main__":
    sys.exit(main())
