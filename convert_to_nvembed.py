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
from nvembed_defaults import DEFAULT_QUERY_TASK, default_backbone_path


logger = logging.getLogger(__name__)

CODE_FILES = ("configuration_nvembed.py", "modeling_nvembed.py")
# sentence-transformers reads the model's forward output "sentence_embeddings" directly: the text modality is pinned,
# so a tokenizer with a chat template is not wrapped into chat messages, and `prompt_length` reaches our forward.
ST_MODALITY_CONFIG = {"text": {"method": "forward", "method_output_name": "sentence_embeddings"}}


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
) -> Path:
    """Convert `source` (default: the bundled SmolLM2-135M-Instruct GGUF) into an NV-Embed folder at `output`."""
    source = default_backbone_path() if source is None else source
    backbone, tokenizer = load_backbone(source)
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
    model.set_tokenizer(tokenizer)
    save_nvembed_folder(model, output, query_prompt=format_instruction(query_task))
    return Path(output)


def save_nvembed_folder(
    model: NVEmbedModel, output: str | Path, query_prompt: str, max_seq_length: int = 4096
) -> None:
    """Save weights (safetensors), tokenizer, the modeling code and the sentence-transformers files."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.config.auto_map = {
        "AutoConfig": "configuration_nvembed.NVEmbedConfig",
        "AutoModel": "modeling_nvembed.NVEmbedModel",
    }
    model.config.architectures = ["NVEmbedModel"]
    model.save_pretrained(output)
    here = Path(__file__).resolve().parent
    for name in CODE_FILES:
        shutil.copyfile(here / name, output / name)
    write_sentence_transformers_files(output, query_prompt=query_prompt, max_seq_length=max_seq_length)


def write_sentence_transformers_files(output: Path, query_prompt: str, max_seq_length: int = 4096) -> None:
    """modules.json with one Transformer module whose output is our forward's "sentence_embeddings"."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.Transformer"}]
    bert_config = {
        "transformer_task": "feature-extraction",
        "modality_config": ST_MODALITY_CONFIG,
        "module_output_name": "sentence_embedding",
        "max_seq_length": max_seq_length,
        "do_lower_case": False,
    }
    st_config = {
        "model_type": "SentenceTransformer",
        "prompts": {"query": query_prompt, "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    for name, content in [
        ("modules.json", modules),
        ("sentence_bert_config.json", bert_config),
        ("config_sentence_transformers.json", st_config),
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
    )
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
