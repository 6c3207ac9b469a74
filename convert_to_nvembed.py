"""Turn a causal-LM checkpoint (a Hugging Face folder or a GGUF file) into an NV-Embed folder, ready for training.

The backbone keeps its weights (the LM head is dropped); the latent-attention block is freshly initialised. The folder
loads with `AutoModel.from_pretrained(folder, trust_remote_code=True)` and with
`SentenceTransformer(folder, trust_remote_code=True)`; prompts "query"/"document" are in
config_sentence_transformers.json.

Usage:
    python convert_to_nvembed.py --output artifacts/nvembed-untrained                # default: SmolLM2-135M GGUF
    python convert_to_nvembed.py --source path/to/causal-lm --output out/ --num-latents 512
"""

import argparse
import json
import logging
import shutil
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from configuration_nvembed import LatentAttentionConfig, NVEmbedConfig
from modeling_nvembed import NVEmbedModel, format_instruction
from nvembed_defaults import DEFAULT_QUERY_TASK, SIMILARITY_TASK, default_backbone_path


logger = logging.getLogger(__name__)

CODE_FILES = ("configuration_nvembed.py", "modeling_nvembed.py", "sentence_transformer_nvembed.py")
# The sentence-transformers files use the module layout every release from 4.0 to 6.x reads (6.x maps these class
# paths to its own modules): Transformer (our forward's per-token `last_hidden_state`; the folder's own
# `sentence_transformer_nvembed.NVEmbedTransformer`, which keeps texts unstripped before sentence-transformers 5.4 so
# the prompt is measured as `encode` measures it), Pooling with the mean over the text without the prompt
# (`include_prompt: false`, the instruction mask), Normalize. Newer keys such as
# `modality_config` would make sentence-transformers < 5.4 fail (unexpected keyword); without a chat template in the
# tokenizer, sentence-transformers 5.4+ infers the plain text modality and never wraps inputs into chat messages.
ST_MODULE_TYPES = {
    "transformer": "sentence_transformer_nvembed.NVEmbedTransformer",
    "pooling": "sentence_transformers.models.Pooling",
    "normalize": "sentence_transformers.models.Normalize",
}
# What a tokenizer_config.json needs to load as the same tokenizer on transformers 4.x and 5.x: the base fast class
# (5.x writes "TokenizersBackend", unknown to 4.x), and no token_type_ids (decoders have none).
PORTABLE_TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "model_input_names": ["input_ids", "attention_mask"],
}
# Written by transformers 5.x about the machine that saved the folder, not about the tokenizer.
_MACHINE_TOKENIZER_KEYS = ("is_local", "local_files_only")


def load_backbone(source: str | Path, dtype: torch.dtype = torch.float32):
    """Load (backbone without LM head, tokenizer) from a HF folder/repo id or a `.gguf` file (dequantized)."""
    source = Path(source)
    if source.suffix == ".gguf":
        if not source.is_file():
            raise FileNotFoundError(f"GGUF file not found: {source}")
        kwargs = {"gguf_file": source.name}
        path = str(source.parent)
    else:
        if not source.exists():
            raise FileNotFoundError(f"Backbone checkpoint not found: {source} (a folder with config.json, or a .gguf)")
        kwargs, path = {}, str(source)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    backbone = AutoModel.from_pretrained(path, dtype=dtype, **kwargs)
    return backbone, tokenizer


def text_config_dict(backbone) -> dict:
    config = backbone.config.to_dict()
    for key in ("quantization_config", "architectures", "_name_or_path", "transformers_version", "dtype"):
        config.pop(key, None)
    return config


def convert(
    source: str | Path | None,
    output: str | Path,
    num_latents: int = 512,
    num_heads: int = 8,
    cross_dim_head: int | None = None,
    mask_type: str = "b",
    pooling_mode: str = "latent_attention",
    query_task: str = DEFAULT_QUERY_TASK,
    seed: int = 0,
    latent_init: str = "identity",
    num_layers: int | None = None,
) -> Path:
    """Convert `source` (default: the bundled SmolLM2-135M-Instruct GGUF) into an NV-Embed folder at `output`.

    latent_init: "identity" zeroes the output projections of the latent block's two residual branches, so the untrained
        model equals mean pooling of the (bidirectional) backbone and training starts from the backbone's
        representation; "random" keeps the release's random init (every text moved by a random perturbation).
    num_layers: keep only the backbone's lower N decoder layers (None: all). A shallower model trains and encodes
        in proportion faster; middle layers of a decoder often embed as well as its top ones.
    """
    if latent_init not in ("identity", "random"):
        raise ValueError(f"latent_init must be 'identity' or 'random', got {latent_init!r}")
    source = default_backbone_path() if source is None else source
    backbone, tokenizer = load_backbone(source)
    if num_layers is not None:
        truncate_layers(backbone, num_layers)
    hidden = backbone.config.hidden_size
    if cross_dim_head is None:
        # Standard multi-head width (hidden / heads). NVIDIA's release uses cross_dim_head = hidden (an 8x wider
        # attention); on SmolLM2-135M that makes pooling ~15% of the backbone's forward instead of ~4%
        # (benchmarks/results/encode_overhead.txt). Pass cross_dim_head=hidden for the release's shape.
        if hidden % num_heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by num_heads {num_heads}; pass cross_dim_head.")
        cross_dim_head = hidden // num_heads
    latent = LatentAttentionConfig(
        num_latents_value=num_latents,
        num_cross_heads=num_heads,
        hidden_dim=hidden,
        latent_dim=hidden,
        cross_dim_head=cross_dim_head,
    )
    config = NVEmbedConfig(
        text_config=text_config_dict(backbone),
        latent_attention_config=latent.to_dict(),
        mask_type=mask_type,
        pooling_mode=pooling_mode,
    )
    torch.manual_seed(seed)
    model = NVEmbedModel(config)
    missing, unexpected = model.embedding_model.load_state_dict(backbone.state_dict(), strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        raise ValueError(
            f"Backbone weights do not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if latent_init == "identity" and model.latent_attention_model is not None:
        zero_latent_residuals(model.latent_attention_model)
    model.set_tokenizer(tokenizer)
    save_nvembed_folder(model, output, query_prompt=format_instruction(query_task))
    return Path(output)


def truncate_layers(backbone, num_layers: int) -> None:
    """Keep the lower `num_layers` decoder layers of `backbone` (in place), and say so in its config."""
    total = backbone.config.num_hidden_layers
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers must be between 1 and the backbone's {total} layers, got {num_layers}")
    backbone.layers = backbone.layers[:num_layers]
    backbone.config.num_hidden_layers = num_layers
    # Backbones with per-layer attention kinds (qwen2, gemma, ...) list one entry per layer.
    if isinstance(getattr(backbone.config, "layer_types", None), list):
        backbone.config.layer_types = backbone.config.layer_types[:num_layers]


def zero_latent_residuals(block) -> None:
    """Zero the last linear layer of both residual branches (cross-attention `to_out`, the MLP's output layer): the
    block then passes every token through unchanged, and the pooled output is the masked mean of the hidden states.
    Gradients still reach every parameter from the first step (as in zero-initialised residual branches, ReZero)."""
    attention, feed_forward = block.cross_attend_blocks
    with torch.no_grad():
        attention.fn.to_out.weight.zero_()
        last = feed_forward.fn.net[-1]
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()


def save_nvembed_folder(
    model: NVEmbedModel, output: str | Path, query_prompt: str, max_seq_length: int = 4096
) -> None:
    """Save weights (safetensors), tokenizer, the modeling code and the sentence-transformers files.

    The folder loads on every supported transformers / sentence-transformers version (README "Supported versions"):
    the tokenizer is saved without its chat template (an embedding model does not use one, and sentence-transformers
    5.4+ would render inputs through it) and with a tokenizer class transformers 4.x knows.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.config.auto_map = {
        "AutoConfig": "configuration_nvembed.NVEmbedConfig",
        "AutoModel": "modeling_nvembed.NVEmbedModel",
    }
    model.config.architectures = ["NVEmbedModel"]
    tokenizer = model.tokenizer
    chat_template = getattr(tokenizer, "chat_template", None)
    if tokenizer is not None:
        tokenizer.chat_template = None
    try:
        model.save_pretrained(output)
    finally:
        if tokenizer is not None:
            tokenizer.chat_template = chat_template
    if tokenizer is not None:
        make_tokenizer_config_portable(output)
    here = Path(__file__).resolve().parent
    for name in CODE_FILES:
        shutil.copyfile(here / name, output / name)
    latent = model.config.latent_attention_config
    write_sentence_transformers_files(
        output,
        query_prompt=query_prompt,
        max_seq_length=max_seq_length,
        embedding_dimension=model.config.text_config.hidden_size,
        pooling_mode=model.config.pooling_mode,
        normalize=latent.output_normalize,
    )


def make_tokenizer_config_portable(output: Path) -> None:
    """Rewrite the saved tokenizer_config.json with `PORTABLE_TOKENIZER_CONFIG` (no chat template is left behind) and
    tokenizer.json's BPE merges in the form every tokenizers release reads (`write_bpe_merges_as_strings`)."""
    write_bpe_merges_as_strings(output / "tokenizer.json")
    path = output / "tokenizer_config.json"
    config = json.loads(path.read_text())
    for key in (*_MACHINE_TOKENIZER_KEYS, "chat_template"):
        config.pop(key, None)
    config.update(PORTABLE_TOKENIZER_CONFIG)
    path.write_text(json.dumps(config, indent=2) + "\n")
    for name in ("chat_template.jinja", "chat_template.json"):
        if (output / name).exists():
            raise ValueError(f"{output / name} was written although the tokenizer's chat template was cleared.")


def write_bpe_merges_as_strings(path: Path) -> None:
    """Rewrite a tokenizer.json's BPE merges from the `["left", "right"]` pairs tokenizers >= 0.20 writes to the
    `"left right"` strings every release reads: tokenizers 0.19 (transformers < 4.45) fails on pairs with "data did not
    match any variant of untagged enum ModelWrapper". Newer releases read both forms as the same merges.

    A merge with a space inside one of its parts cannot be written as a string; those files keep their pairs (logged),
    and load with transformers >= 4.45 only. Byte-level BPE (Llama 3, Qwen2, SmolLM) and sentencepiece-derived BPE
    (Mistral, Llama 2) spell the space as a symbol and have none.
    """
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    merges = model.get("merges")
    if model.get("type") != "BPE" or not merges or all(isinstance(merge, str) for merge in merges):
        return
    if any(" " in part for merge in merges if not isinstance(merge, str) for part in merge):
        logger.warning(
            f"{path}: a BPE merge has a space inside a part; its merges stay [left, right] pairs, which only "
            "tokenizers >= 0.20 (transformers >= 4.45) reads."
        )
        return
    model["merges"] = [merge if isinstance(merge, str) else " ".join(merge) for merge in merges]
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_sentence_transformers_files(
    output: Path,
    query_prompt: str,
    max_seq_length: int = 4096,
    embedding_dimension: int | None = None,
    pooling_mode: str = "latent_attention",
    normalize: bool = True,
) -> None:
    """modules.json (Transformer -> Pooling -> Normalize), their configs, and the prompts.

    Pooling is the mean over the text + EOS tokens of our forward's `last_hidden_state` (the latent block's per-token
    output), or the EOS token for `pooling_mode="last_token"`; `include_prompt: false` leaves the instruction out, as
    `encode` does.
    """
    if embedding_dimension is None or embedding_dimension <= 0:
        raise ValueError(f"embedding_dimension must be the backbone's hidden size, got {embedding_dimension!r}.")
    if pooling_mode not in ("latent_attention", "mean", "last_token"):
        raise ValueError(f"pooling_mode must be 'latent_attention', 'mean' or 'last_token', got {pooling_mode!r}.")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": ST_MODULE_TYPES["transformer"]},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST_MODULE_TYPES["pooling"]},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": ST_MODULE_TYPES["normalize"]})
    last = pooling_mode == "last_token"
    pooling_config = {  # the keys sentence-transformers 4.x writes; 6.x reads them as pooling_mode "mean"/"lasttoken"
        "word_embedding_dimension": embedding_dimension,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": not last,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": last,
        "include_prompt": False,
    }
    bert_config = {"max_seq_length": max_seq_length, "do_lower_case": False}
    st_config = {
        "model_type": "SentenceTransformer",
        # "similarity": one instruction for both sides of symmetric use (STS, deduplication), the paper's STS task
        "prompts": {"query": query_prompt, "document": "", "similarity": format_instruction(SIMILARITY_TASK)},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    (output / "1_Pooling").mkdir(exist_ok=True)
    for name, content in [
        ("modules.json", modules),
        ("sentence_bert_config.json", bert_config),
        ("config_sentence_transformers.json", st_config),
        ("1_Pooling/config.json", pooling_config),
    ]:
        (output / name).write_text(json.dumps(content, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=None, help="HF causal-LM folder or .gguf file (default: SmolLM2-135M)")
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--num-latents", type=int, default=512)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument(
        "--cross-dim-head", type=int, default=None, help="default: hidden_size / num_heads (the release: hidden_size)"
    )
    parser.add_argument("--mask-type", choices=["b", "c"], default="b", help="b: bidirectional, c: causal")
    parser.add_argument(
        "--pooling-mode", choices=["latent_attention", "mean", "last_token"], default="latent_attention"
    )
    parser.add_argument(
        "--latent-init",
        choices=["identity", "random"],
        default="identity",
        help="identity: the untrained block equals mean pooling (zeroed residual outputs); random: the release's init",
    )
    parser.add_argument(
        "--num-layers", type=int, default=None, help="keep only the backbone's lower N decoder layers (default: all)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    out = convert(
        args.source,
        args.output,
        num_latents=args.num_latents,
        num_heads=args.num_heads,
        cross_dim_head=args.cross_dim_head,
        mask_type=args.mask_type,
        pooling_mode=args.pooling_mode,
        latent_init=args.latent_init,
        num_layers=args.num_layers,
    )
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
