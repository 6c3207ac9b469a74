"""Attention kernels of the bidirectional backbone: sdpa vs eager (and flash-attention where installed).

    .venv/bin/python benchmarks/attention_path.py                                  # CPU: lengths 128..2048, batch 4
    .venv/bin/python benchmarks/attention_path.py --device cuda --lengths 128,512,2048,8192,32768 --repeats 10

The backbone of the converted SmolLM2-135M NV-Embed model runs without its causal mask (`is_causal = False`); the
kernel is switched on the loaded model (`set_attn_implementation`), so every variant uses the same weights and the
same batch (one window of real text per row). Per length the variants are timed interleaved, and their last hidden
states are compared (max abs diff against eager, on real tokens). Two batch shapes per length: rows of equal length
(no padding: sdpa gets no mask at all) and right-padded rows of lengths L, 3L/4, L/2, L/4 cycled, as `encode` makes
them (sdpa then gets a padding mask, which selects a different kernel). A bidirectionality probe checks each kernel
really attends forward: changing the last token must change the first token's hidden state.
"""

import argparse
import importlib.util

import torch
from _model import converted_folder, load_model, pick_dtype
from _report import Report
from _texts import token_batch
from _timing import interleaved, median, set_threads, spread


def set_kernel(backbone, name: str) -> None:
    if hasattr(backbone, "set_attn_implementation"):
        backbone.set_attn_implementation(name)
    else:
        backbone.config._attn_implementation = name


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--lengths", default="128,256,512,1024,2048")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per kernel (halved above 1024 tokens)")
    args = parser.parse_args()
    set_threads(args.threads)

    device, dtype = args.device, pick_dtype(args.device)
    report = Report("attention_path", device)
    model = load_model(converted_folder(), device, dtype)
    backbone = model.embedding_model
    kernels = ["eager", "sdpa"]
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        kernels.append("flash_attention_2")
    report(f"kernels: {kernels} (flash-attention installed: {importlib.util.find_spec('flash_attn') is not None})")
    report(f"device {device}, dtype {dtype}, batch {args.batch_size}; median [min-max] of the repeats")
    report()

    def run(kernel, batch):
        def fn():
            set_kernel(backbone, kernel)
            with torch.no_grad():
                return backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)

        return fn

    # bidirectionality probe at a short length
    probe = token_batch(model.tokenizer, 1, 32, device)
    changed = {k: v.clone() for k, v in probe.items()}
    changed["input_ids"][0, -2] = (changed["input_ids"][0, -2] + 1) % model.config.text_config.vocab_size
    for kernel in kernels:
        a = run(kernel, probe)().last_hidden_state[0, 0]
        b = run(kernel, changed)().last_hidden_state[0, 0]
        moved = bool((a - b).abs().max() > 0)
        report(f"bidirectional probe {kernel}: first token moves when a later token changes: {moved}")
    report()

    rows = []
    header = (
        "  length | padding | "
        + " | ".join(f"{k:>24s}" for k in kernels)
        + " | eager/sdpa median | min | max |diff| vs eager"
    )
    for length in [int(x) for x in args.lengths.split(",")]:
        for padded in (False, True):
            batch = token_batch(model.tokenizer, args.batch_size, length, device)
            if padded:
                pad_right(batch, model.tokenizer.pad_token_id)
            keep = batch["attention_mask"].bool()
            reference = run("eager", batch)().last_hidden_state.float()[keep]
            diffs = {
                k: (run(k, batch)().last_hidden_state.float()[keep] - reference).abs().max().item()
                for k in kernels[1:]
            }
            repeats = args.repeats if length <= 1024 else max(1, args.repeats // 2)
            # the outputs above served as warm-up at this length
            times = interleaved({k: run(k, batch) for k in kernels}, repeats, warmup=0, device=device)
            t = {k: median(v) for k, v in times.items()}
            cells = " | ".join(f"{t[k]:7.3f} s {spread(times[k]):>16s}" for k in kernels)
            diff = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
            label = "padded" if padded else "none"
            # the ratio of the fastest runs too: on a shared CPU, noise only ever adds time
            fastest = min(times["eager"]) / min(times["sdpa"])
            rows.append(
                f"  {length:6d} | {label:7s} | {cells} | {t['eager'] / t['sdpa']:16.2f}x | {fastest:4.2f}x | {diff}"
            )
            report(
                f"length {length}, padding {label}: "
                + ", ".join(f"{k} {t[k]:.3f} s {spread(times[k])}" for k in kernels)
                + f"; eager/sdpa {t['eager'] / t['sdpa']:.2f}x (fastest runs {fastest:.2f}x); max abs diff {diff}"
            )
    report()
    report(f"summary (seconds per forward of the backbone, batch {args.batch_size}; median [min-max]):")
    report(header)
    for row in rows:
        report(row)
    report.save()


def pad_right(batch: dict, pad_token_id: int) -> None:
    """Rows keep L, 3L/4, L/2, L/4 tokens (cycled) and are right-padded to L, in place."""
    B, L = batch["input_ids"].shape
    for b in range(B):
        n = max(1, L * (4 - b % 4) // 4)
        batch["attention_mask"][b, n:] = 0
        batch["input_ids"][b, n:] = pad_token_id
        batch["pool_mask"][b, n:] = 0


if __name__ == "__main__":
    main()
