"""Write the version matrix's reference: tiny NV-Embed folders saved by the main environment, and their vectors.

    python tests/compat/reference.py OUT

OUT/tiny: a converted folder (tiny llama backbone with a non-default rope_theta, random latent block), as
`convert_to_nvembed.py` writes it; OUT/tiny-qwen2: the same from a qwen2 backbone (biased q/k/v). OUT/release: the
same kind of model in NVIDIA's released layout (a `bidir_mistral` text config in 4.x key names, `embedding_model.*` /
`latent_attention_model.*` weights), with this repository's code files. OUT/reference.json: the vectors `encode`
and sentence-transformers give here, and the versions that made them. The other environments load these folders
with their own transformers / sentence-transformers (tests/compat/test_folder.py) and must give the same vectors.
"""

import json
import shutil
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "gzip compresses files with the deflate algorithm",
    "the fox",
    "a library for parsing command line options and the quick brown fox",
]
TASK = "Given a query, retrieve relevant passages"
CONVERTED_FOLDERS = {"tiny": "llama", "tiny-qwen2": "qwen2"}  # folder name -> backbone family
ROPE_THETA = 50000.0  # not the default 10000: a backbone config read with the wrong rotary keys gives other vectors


def make_tokenizer():
    """The tests' tiny byte-level BPE tokenizer (tests/conftest.py), with a chat template as SmolLM2's tokenizer has:
    the saved folder must not carry it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_tokenizer as tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
    return tokenizer


def text_config(model_type: str) -> dict:
    return dict(
        model_type=model_type,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=300,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        rope_theta=ROPE_THETA,
    )


def build_causal_lm(path: Path, family: str = "llama") -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = text_config(family)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))
    model.save_pretrained(path)
    tokenizer = make_tokenizer()
    # a pad token of its own vocabulary: transformers 5 reads a qwen2 folder's tokenizer as Qwen2's class, whose
    # default pad token "<|endoftext|>" would otherwise be added past the tiny vocabulary
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(path)
    return path


def build_release_folder(path: Path) -> Path:
    """A tiny checkpoint in NVIDIA's NV-Embed-v2 layout, loaded by this repository's code files."""
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(ROOT))
    from configuration_nvembed import NVEmbedConfig
    from convert_to_nvembed import CODE_FILES, make_tokenizer_config_portable
    from modeling_nvembed import NVEmbedModel, ensure_tokenizer_appends_eos

    path.mkdir(parents=True)
    release_text = {**text_config("mistral"), "sliding_window": 4, "_name_or_path": "nvidia/NV-Embed-v2"}
    release_text["model_type"] = "bidir_mistral"
    latent = dict(num_latents_value=16, num_cross_heads=2, hidden_dim=32, latent_dim=32, cross_dim_head=32)
    config = {
        "architectures": ["NVEmbedModel"],
        "auto_map": {
            "AutoConfig": "configuration_nvembed.NVEmbedConfig",
            "AutoModel": "modeling_nvembed.NVEmbedModel",
        },
        "model_type": "nvembed",
        "add_eos": True,
        "add_pad_token": True,
        "is_mask_instruction": True,
        "mask_type": "b",
        "padding_side": "right",
        "latent_attention_config": {"model_type": "latent_attention", **latent},
        "text_config": release_text,
        "torch_dtype": "float32",
        "transformers_version": "4.42.4",
    }
    torch.manual_seed(1)
    model = NVEmbedModel(NVEmbedConfig(**{k: v for k, v in config.items() if k not in ("auto_map", "architectures")}))
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer = ensure_tokenizer_appends_eos(make_tokenizer())
    tokenizer.chat_template = None
    tokenizer.save_pretrained(path)
    make_tokenizer_config_portable(path)
    for name in CODE_FILES:
        shutil.copyfile(ROOT / name, path / name)
    return path


def encode_all(folder: Path) -> dict:
    """The vectors every environment compares: AutoModel `encode` (eager and sdpa, with and without the instruction,
    both padding sides) and, where the folder has its files, sentence-transformers with and without a prompt."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), trust_remote_code=True).eval()
    instruction = model_module(model).format_instruction(TASK)
    vectors = {}
    for attn in ("eager", "sdpa"):
        model.embedding_model.config._attn_implementation = attn
        for side in ("right", "left"):
            model.tokenizer.padding_side = side
            vectors[f"encode/{attn}/{side}/query"] = model.encode(TEXTS, instruction=instruction, batch_size=3)
            vectors[f"encode/{attn}/{side}/plain"] = model.encode(TEXTS, batch_size=3)
    if (folder / "modules.json").is_file():
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
        vectors["st/query"] = st.encode(TEXTS, prompt_name="query", convert_to_tensor=True)
        vectors["st/plain"] = st.encode(TEXTS, convert_to_tensor=True)
    return {name: torch.as_tensor(v).tolist() for name, v in vectors.items()}


def model_module(model):
    """The folder's own modeling module (remote code), not this repository's copy."""
    return sys.modules[type(model).__module__]


def build(out: Path) -> Path:
    import sentence_transformers
    import transformers

    sys.path.insert(0, str(ROOT))
    from convert_to_nvembed import convert
    from modeling_nvembed import format_instruction

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it first (the reference is written from scratch).")
    out.mkdir(parents=True)
    converted = {}
    for name, family in CONVERTED_FOLDERS.items():
        lm = build_causal_lm(out / f"causal-lm-{family}", family)
        converted[name] = convert(lm, out / name, num_latents=16, num_heads=2, cross_dim_head=8, latent_init="random")
        shutil.rmtree(lm)
    release = build_release_folder(out / "release")
    reference = {
        "versions": {
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "texts": TEXTS,
        "instruction": format_instruction(TASK),
        "vectors": {
            **{name: encode_all(folder) for name, folder in converted.items()},
            "release": encode_all(release),
        },
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(f"wrote {build(Path(sys.argv[1]))}")
