"""Cost of latent-attention pooling: NV-Embed vs the same backbone and weights with plain mean pooling.

    .venv/bin/python benchmarks/encode_overhead.py --threads 1
    .venv/bin/python benchmarks/encode_overhead.py --device cuda --batch-size 64 --lengths 128,512,2048 --texts 512

Model: the bundled SmolLM2-135M converted with the converter's defaults (512 latents, 8 heads of hidden/8). The two
systems differ only in `config.pooling_mode` ("latent_attention" vs "mean"), on identical inputs, interleaved.
1. `encode()` end to end on real text of mixed lengths (16-256 tokens, length-sorted batches): passages, and queries
   that carry an instruction (attended to, not pooled): texts/s and tokens/s.
2. Fixed-length batches (no padding, no instruction): one end-to-end forward.
3. The pooling step alone on fixed hidden states (steadier on a shared CPU), as % of the backbone forward, for
     packed   what ships: the block runs only on the pooled tokens, packed into one sequence
     padded   the block before that change: on every (row, position), then a masked mean (same output)
     release  NVIDIA's layout: heads as wide as the hidden size (8x the converter's) and the latents' K/V projected
              once per row; random weights of that shape, timing only
   on fixed-length batches, and on the mixed-length query batches of part 1 (where padding and instructions exist).
"""

import argparse
import copy
import types

import torch
import torch.nn.functional as F
from _model import converted_folder, load_model, pick_dtype
from _report import Report
from _texts import mixed_corpus, token_batch
from _timing import interleaved, median, set_threads, spread


def padded_forward(self, hidden_states: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """The block before packing: every position of the (B, L) batch goes through it, then a masked mean."""
    from modeling_nvembed import masked_mean

    cross_attn, cross_ff = self.cross_attend_blocks
    latents = self.latents.to(hidden_states.dtype).unsqueeze(0)
    hidden_states = hidden_states + cross_attn(hidden_states, context=latents)
    hidden_states = hidden_states + cross_ff(hidden_states)
    return F.normalize(masked_mean(hidden_states, pool_mask), p=2, dim=-1)


def release_forward(self, hidden_states: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """NVIDIA's block: the latents expanded to (B, N, d) before their LayerNorm and K/V projection (once per row), all
    positions processed, then a masked mean."""
    from modeling_nvembed import masked_mean

    cross_attn, cross_ff = self.cross_attend_blocks
    attention = cross_attn.fn
    B, L, _ = hidden_states.shape
    latents = cross_attn.norm_context(self.latents.to(hidden_states.dtype).unsqueeze(0).expand(B, -1, -1))
    N = latents.shape[1]
    k, v = attention.to_kv(latents).chunk(2, dim=-1)  # (B, N, inner) each: B times the work
    k = k.view(B, N, attention.heads, -1).transpose(1, 2)
    v = v.view(B, N, attention.heads, -1).transpose(1, 2)
    q = attention.to_q(cross_attn.norm(hidden_states)).view(B, L, attention.heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v)
    hidden_states = hidden_states + attention.to_out(out.transpose(1, 2).reshape(B, L, -1))
    hidden_states = hidden_states + cross_ff(hidden_states)
    return F.normalize(masked_mean(hidden_states, pool_mask), p=2, dim=-1)


def release_block(model, dtype, device):
    """A latent block of the release's shape (cross_dim_head = hidden size), random weights, release forward."""
    from configuration_nvembed import LatentAttentionConfig
    from modeling_nvembed import NVEmbedLatentAttentionModel

    cfg = model.config.latent_attention_config
    wide = LatentAttentionConfig(
        num_latents_value=cfg.num_latents_value,
        num_cross_heads=cfg.num_cross_heads,
        hidden_dim=cfg.hidden_dim,
        latent_dim=cfg.latent_dim,
        cross_dim_head=cfg.hidden_dim,
    )
    block = NVEmbedLatentAttentionModel(wide).to(device=device, dtype=dtype).eval()
    block.forward = types.MethodType(release_forward, block)
    return block


def n_params(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--lengths", default="64,256", help="tokens per text of the fixed-length part, comma-separated"
    )
    parser.add_argument("--texts", type=int, default=64, help="mixed-length texts encoded per variant in part 1")
    parser.add_argument("--repeats", type=int, default=3, help="timed end-to-end runs per variant")
    parser.add_argument("--pool-repeats", type=int, default=9, help="timed pooling-only calls per variant")
    args = parser.parse_args()
    set_threads(args.threads)

    from modeling_nvembed import build_pool_mask, format_instruction, instruction_length, masked_mean
    from nvembed_defaults import DEFAULT_QUERY_TASK

    device, dtype = args.device, pick_dtype(args.device)
    report = Report("encode_overhead", device)
    folder = converted_folder()
    model = load_model(folder, device, dtype)
    block = model.latent_attention_model
    padded = copy.deepcopy(block)
    padded.forward = types.MethodType(padded_forward, padded)
    release = release_block(model, dtype, device)
    text, la = model.config.text_config, model.config.latent_attention_config
    report(f"model: {folder.name} (SmolLM2-135M backbone, hidden {text.hidden_size}, {text.num_hidden_layers} layers,")
    report(f"  {n_params(model.embedding_model):.1f}M params); latent block {la.num_latents_value} latents,")
    report(f"  {la.num_cross_heads} heads x {la.cross_dim_head} ({n_params(block):.1f}M params; the release's shape:")
    report(f"  {la.num_cross_heads} heads x {la.hidden_dim}, {n_params(release):.1f}M)")
    report(
        f"device {device}, dtype {dtype}, batch {args.batch_size}; median [min-max] of {args.repeats} interleaved runs"
    )
    report()

    def set_pooling(mode):
        model.config.pooling_mode = mode

    instruction = format_instruction(DEFAULT_QUERY_TASK)
    texts = mixed_corpus(model.tokenizer, args.texts, 16, 256)
    real = model.tokenize(texts, max_length=512)["attention_mask"].sum().item()
    with_instruction = model.tokenize(texts, instruction=instruction, max_length=512)["attention_mask"].sum().item()

    def encode(mode, query):
        def run():
            set_pooling(mode)
            with torch.no_grad():
                return model.encode(texts, instruction=instruction if query else "", batch_size=args.batch_size)

        return run

    summary = []
    report(f"1. encode() on {args.texts} real texts of 16-256 tokens (length-sorted batches of {args.batch_size})")
    for query in (False, True):
        label = "queries (with instruction)" if query else "passages"
        tokens = with_instruction if query else real
        diff = (encode("latent_attention", query)() - encode("latent_attention", query)()).abs().max().item()
        times = interleaved({m: encode(m, query) for m in ("mean", "latent_attention")}, args.repeats, device=device)
        t = {m: median(v) for m, v in times.items()}
        report(f"  {label}: {tokens} tokens incl. EOS{' and instruction' if query else ''}")
        for m in ("mean", "latent_attention"):
            report(
                f"    {m:16s} {t[m]:8.3f} s {spread(times[m]):>17s}  {args.texts / t[m]:7.2f} texts/s"
                f"  {tokens / t[m]:8.0f} tokens/s"
            )
        overhead = 100 * (t["latent_attention"] / t["mean"] - 1)
        report(f"    latent-attention overhead: {overhead:+.1f}%  (target < 5%; repeat-to-repeat diff {diff:.1e})")
        summary.append((f"encode, {label}", overhead))
    set_pooling("latent_attention")
    report()

    def forward(mode, batch):
        def run():
            set_pooling(mode)
            with torch.no_grad():
                return model(**batch)["sentence_embeddings"]

        return run

    def pool_step(batch, label):
        with torch.no_grad():
            hidden = model.embedding_model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
            ).last_hidden_state
        mask = batch["pool_mask"]

        def pool(fn):
            def run():
                with torch.no_grad():
                    return fn(hidden, mask)

            return run

        same = (block(hidden, mask) - padded(hidden, mask)).abs().max().item()
        variants = {
            "mean": pool(lambda h, m: F.normalize(masked_mean(h, m), dim=-1)),
            "packed": pool(block),
            "padded": pool(padded),
            "release": pool(release),
        }
        times = interleaved(variants, args.pool_repeats, warmup=2, device=device)
        p = {m: median(v) for m, v in times.items()}
        backbone = median(
            interleaved(
                {
                    "b": lambda: model.embedding_model(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
                    )
                },
                args.repeats,
                device=device,
            )["b"]
        )
        report(f"  pooling step alone ({label}), % of the backbone forward ({backbone:.3f} s):")
        for m in variants:
            ms = [1000 * x for x in times[m]]
            report(f"    {m:8s} {1000 * p[m]:9.1f} ms {spread(ms):>19s}  = {100 * p[m] / backbone:6.2f}%")
        report(
            f"    packed vs padded: {p['padded'] / p['packed']:.2f}x faster, max abs diff {same:.1e};"
            f" vs release: {p['release'] / p['packed']:.1f}x faster"
        )
        return {m: 100 * p[m] / backbone for m in variants}

    report("2. fixed-length batches (no padding, no instruction), end-to-end forward")
    for length in [int(x) for x in args.lengths.split(",")]:
        batch = token_batch(model.tokenizer, args.batch_size, length, device)
        times = interleaved({m: forward(m, batch) for m in ("mean", "latent_attention")}, args.repeats, device=device)
        t = {m: median(v) for m, v in times.items()}
        tokens = args.batch_size * length
        report(f" length {length} (batch {args.batch_size} x {length} = {tokens} tokens):")
        for m in ("mean", "latent_attention"):
            report(f"    {m:16s} {t[m]:8.3f} s {spread(times[m]):>17s}  {tokens / t[m]:8.0f} tokens/s")
        overhead = 100 * (t["latent_attention"] / t["mean"] - 1)
        report(f"    latent-attention overhead: {overhead:+.1f}%  (target < 5%)")
        pools = pool_step(batch, f"{length} tokens")
        summary.append((f"forward, {length} tokens", overhead, pools))
        report()

    report(f"3. pooling step on a mixed-length query batch (the {args.batch_size} longest texts, with instruction)")
    longest = sorted(texts, key=len)[-args.batch_size :]
    tokenized = model.tokenize(longest, instruction=instruction, max_length=512)
    batch = {
        "input_ids": tokenized["input_ids"].to(device),
        "attention_mask": tokenized["attention_mask"].to(device),
    }
    n_instruction = instruction_length(model.tokenizer, instruction)
    batch["pool_mask"] = build_pool_mask(batch["attention_mask"], n_instruction)
    pooled, total = int(batch["pool_mask"].sum()), batch["input_ids"].numel()
    report(f"  {total} positions, {pooled} pooled ({100 * pooled / total:.0f}%; the rest padding and instruction)")
    pools = pool_step(batch, "mixed queries")
    summary.append(("pool step, mixed queries", None, pools))
    report()

    report("summary: latent-attention overhead over mean pooling (target < 5%)")
    for row in summary:
        line = f"  {row[0]:32s}"
        if row[1] is not None:
            line += f" end to end {row[1]:+6.1f}%"
        if len(row) > 2:
            pools = row[2]
            line += (
                f" | pool step, % of backbone: packed {pools['packed']:.2f}%, padded {pools['padded']:.2f}%,"
                f" release {pools['release']:.2f}%"
            )
        report(line)
    report.save()


if __name__ == "__main__":
    main()
