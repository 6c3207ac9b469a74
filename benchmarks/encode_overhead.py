"""Cost of latent-attention pooling: NV-Embed (512 latents) vs the same backbone and weights with mean pooling.

    .venv/bin/python benchmarks/encode_overhead.py                      # CPU, batch 2, lengths 128 and 512
    .venv/bin/python benchmarks/encode_overhead.py --device cuda --batch-size 32 --lengths 128,512,2048 --repeats 20

One model is loaded once; the variants differ only in pooling, on identical token batches (windows of real text):
  latent   config.pooling_mode = "latent_attention" (what ships)
  mean     config.pooling_mode = "mean" (the paper's ablation: no latent block at all)
  perrow   the release's block: the latents expanded to (B, N, d) before their LayerNorm and K/V projection, so those
           run once per row; the shipped block (since commit ee8224d) runs them once per batch. The before of the
           before/after: same weights, same output (max abs diff printed).
End-to-end forwards are interleaved (latent, mean, perrow, ...). Then the pooling step alone is timed on fixed hidden
states, which is far less noisy on a shared CPU, and compared with a narrow block (cross_dim_head = hidden/heads, so
the attention's inner width is the hidden size instead of 8x it; new random weights, timing only).
"""

import argparse
import copy
import types

import torch
import torch.nn.functional as F
from _common import (
    Report,
    converted_folder,
    interleaved,
    load_model,
    median,
    pick_dtype,
    set_threads,
    spread,
    token_batch,
)


def per_row_forward(self, hidden_states: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """The release's block: the latents are expanded to (B, N, d) before their LayerNorm and K/V projection, so those
    are computed once per row. Same weights, same output as the shipped block, which projects them once per batch."""
    from modeling_nvembed import masked_mean

    cross_attn, cross_ff = self.cross_attend_blocks
    attention = cross_attn.fn
    B, L, _ = hidden_states.shape
    latents = self.latents.to(hidden_states.dtype).unsqueeze(0).expand(B, -1, -1)  # (B, N, d)
    latents = cross_attn.norm_context(latents)
    N = latents.shape[1]
    k, v = attention.to_kv(latents).chunk(2, dim=-1)  # (B, N, inner) each: B times the work
    k = k.view(B, N, attention.heads, -1).transpose(1, 2)  # (B, h, N, dh)
    v = v.view(B, N, attention.heads, -1).transpose(1, 2)  # (B, h, N, dh)
    q = attention.to_q(cross_attn.norm(hidden_states)).view(B, L, attention.heads, -1).transpose(1, 2)  # (B, h, L, dh)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, h, L, dh)
    hidden_states = hidden_states + attention.to_out(out.transpose(1, 2).reshape(B, L, -1))  # (B, L, d)
    hidden_states = hidden_states + cross_ff(hidden_states)
    embeddings = masked_mean(hidden_states, pool_mask)
    return F.normalize(embeddings, p=2, dim=-1) if self.output_normalize else embeddings


def narrow_block(model, dtype, device):
    """The latent block with cross_dim_head = hidden / heads (inner width = hidden), random weights."""
    from configuration_nvembed import LatentAttentionConfig
    from modeling_nvembed import NVEmbedLatentAttentionModel

    cfg = model.config.latent_attention_config
    narrow = LatentAttentionConfig(
        num_latents_value=cfg.num_latents_value,
        num_cross_heads=cfg.num_cross_heads,
        hidden_dim=cfg.hidden_dim,
        latent_dim=cfg.latent_dim,
        cross_dim_head=cfg.hidden_dim // cfg.num_cross_heads,
    )
    return NVEmbedLatentAttentionModel(narrow).to(device=device, dtype=dtype).eval()


def block_params(block) -> int:
    return sum(p.numel() for p in block.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lengths", default="128,512", help="tokens per text, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed end-to-end forwards per variant and length")
    parser.add_argument("--pool-repeats", type=int, default=7, help="timed pooling-only calls per variant")
    parser.add_argument("--num-latents", type=int, default=512)
    parser.add_argument(
        "--cross-dim-head", type=int, default=576, help="576: the release's 8x-wide block; 0: the converter's default"
    )
    args = parser.parse_args()
    set_threads(args.threads)

    device, dtype = args.device, pick_dtype(args.device)
    report = Report("encode_overhead", device)
    folder = converted_folder(args.num_latents, args.cross_dim_head or None)
    model = load_model(folder, device, dtype)
    block = model.latent_attention_model
    perrow = copy.deepcopy(block)
    perrow.forward = types.MethodType(per_row_forward, perrow)
    narrow = narrow_block(model, dtype, device)
    narrow_perrow = copy.deepcopy(narrow)
    narrow_perrow.forward = types.MethodType(per_row_forward, narrow_perrow)
    text = model.config.text_config
    la = model.config.latent_attention_config
    report(f"model: {folder.name} (SmolLM2-135M backbone, hidden {text.hidden_size}, {text.num_hidden_layers} layers)")
    report(
        f"latent block: {la.num_latents_value} latents, {la.num_cross_heads} heads x cross_dim_head"
        f" {la.cross_dim_head} = inner width {la.num_cross_heads * la.cross_dim_head}"
        f" ({block_params(block) / 1e6:.1f}M params; narrow variant {block_params(narrow) / 1e6:.1f}M);"
        f" backbone {block_params(model.embedding_model) / 1e6:.1f}M params"
    )
    report(f"device {device}, dtype {dtype}, batch {args.batch_size}, repeats {args.repeats} (median [min-max])")
    report()

    def forward(mode, batch):
        def run():
            model.config.pooling_mode = "latent_attention" if mode != "mean" else "mean"
            model.latent_attention_model = perrow if mode == "perrow" else block
            with torch.no_grad():
                return model(**batch)["sentence_embeddings"]

        return run

    lengths = [int(x) for x in args.lengths.split(",")]
    summary = []
    for length in lengths:
        batch = token_batch(model.tokenizer, args.batch_size, length, device)
        same = (forward("latent", batch)() - forward("perrow", batch)()).abs().max().item()
        times = interleaved(
            {m: forward(m, batch) for m in ("latent", "mean", "perrow")}, args.repeats, warmup=1, device=device
        )
        t = {m: median(v) for m, v in times.items()}
        n_tokens = args.batch_size * length
        report(f"length {length} (batch {args.batch_size} x {length} = {n_tokens} tokens), end-to-end forward:")
        for m in ("mean", "latent", "perrow"):
            report(
                f"  {m:8s} {t[m]:8.3f} s {spread(times[m]):>17s}  {args.batch_size / t[m]:7.2f} texts/s"
                f"  {n_tokens / t[m]:8.0f} tokens/s"
            )
        report(f"  latent-attention overhead vs mean: {100 * (t['latent'] / t['mean'] - 1):+.1f}%  (target < 5%)")
        report(f"  perrow K/V overhead vs mean:      {100 * (t['perrow'] / t['mean'] - 1):+.1f}%")
        report(f"  perrow vs shipped embeddings: max abs diff {same:.2e}")

        # pooling alone on fixed hidden states: isolates the block from backbone noise
        with torch.no_grad():
            hidden = model.embedding_model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
            ).last_hidden_state
        from modeling_nvembed import masked_mean

        pool_mask = batch["pool_mask"]

        def pool(fn):
            def run():
                with torch.no_grad():
                    return fn(hidden, pool_mask)

            return run

        pools = {
            "mean": pool(lambda h, m: F.normalize(masked_mean(h, m), dim=-1)),
            "latent": pool(block),
            "perrow": pool(perrow),
            "narrow": pool(narrow),
            "narrow+perrow": pool(narrow_perrow),
        }
        ptimes = interleaved(pools, args.pool_repeats, warmup=2, device=device)
        p = {m: median(v) for m, v in ptimes.items()}
        backbone = max(t["mean"] - p["mean"], 1e-9)
        report(f"  pooling step alone (median of {args.pool_repeats}), % of the backbone forward ({backbone:.3f} s):")
        for m in pools:
            ms = [1000 * x for x in ptimes[m]]
            report(f"    {m:15s} {1000 * p[m]:9.1f} ms {spread(ms):>19s}  = {100 * p[m] / backbone:6.1f}%")
        summary.append((length, t, p, backbone))
        report()

    report("summary (overhead = extra time over mean pooling):")
    report("  length | end-to-end latent | end-to-end perrow | pool-only latent | perrow | narrow | narrow+perrow")
    for length, t, p, backbone in summary:

        def over(x):
            return f"{100 * (x - p['mean']) / backbone:+6.1f}%"

        report(
            f"  {length:6d} | {100 * (t['latent'] / t['mean'] - 1):+16.1f}%"
            f" | {100 * (t['perrow'] / t['mean'] - 1):+17.1f}% | {over(p['latent']):>16s} | {over(p['perrow']):>7s}"
            f" | {over(p['narrow']):>6s} | {over(p['narrow+perrow']):>14s}"
        )
    report.save()


if __name__ == "__main__":
    main()
