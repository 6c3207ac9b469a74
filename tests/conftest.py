"""Tiny random backbones and NV-Embed folders built on the fly (seconds), shared by the tests."""

import os
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "gzip compresses files with the deflate algorithm",
    "the quick brown fox jumps over the lazy dog",
    "a library for parsing command line options",
    "Instruct: Given a query, retrieve relevant passages\nQuery:\n",
    "python email package builds and parses messages",
    "network time protocol daemon keeps clocks in sync",
]

TINY_TEXT_CONFIGS = {
    "llama": dict(model_type="llama", num_key_value_heads=2),
    "mistral": dict(model_type="mistral", num_key_value_heads=2, sliding_window=4),
    "qwen2": dict(model_type="qwen2", num_key_value_heads=2),
    "qwen3": dict(model_type="qwen3", num_key_value_heads=2, head_dim=8),
}


def make_tokenizer():
    """A byte-level BPE tokenizer trained on a few sentences, with BOS/EOS like a llama tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def tiny_text_config(family: str = "llama", vocab_size: int = 300, num_hidden_layers: int = 2) -> dict:
    base = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        vocab_size=vocab_size,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
    )
    return {**base, **TINY_TEXT_CONFIGS[family]}


def tiny_latent_config() -> dict:
    return dict(num_latents_value=16, num_cross_heads=2, hidden_dim=32, latent_dim=32, cross_dim_head=8)


def build_causal_lm_folder(path: Path, family: str = "llama", num_hidden_layers: int = 2) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(tiny_text_config(family, num_hidden_layers=num_hidden_layers))
    model_type = config.pop("model_type")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config))
    model.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory) -> Path:
    return build_causal_lm_folder(tmp_path_factory.mktemp("tiny-causal-lm"))


@pytest.fixture(scope="session")
def tiny_nvembed_folder(tiny_causal_lm, tmp_path_factory) -> Path:
    """A converted NV-Embed folder (tiny llama backbone, random latent block)."""
    from convert_to_nvembed import convert

    out = tmp_path_factory.mktemp("tiny-nvembed")
    return convert(tiny_causal_lm, out, num_latents=16, num_heads=2, cross_dim_head=8, latent_init="random")


@pytest.fixture(scope="session")
def tiny_nvembed_folder_4_layers(tmp_path_factory) -> Path:
    """As `tiny_nvembed_folder` with 4 decoder layers, so that "the top k layers" and "the layers from k up" differ."""
    from convert_to_nvembed import convert

    source = build_causal_lm_folder(tmp_path_factory.mktemp("tiny-causal-lm-4-layers"), num_hidden_layers=4)
    out = tmp_path_factory.mktemp("tiny-nvembed-4-layers")
    return convert(source, out, num_latents=16, num_heads=2, cross_dim_head=8, latent_init="random")


@pytest.fixture()
def tiny_model(tiny_nvembed_folder):
    from modeling_nvembed import NVEmbedModel

    return NVEmbedModel.from_pretrained(tiny_nvembed_folder).eval()
