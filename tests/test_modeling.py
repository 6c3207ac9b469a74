"""Behaviour of the NV-Embed model core on tiny random backbones (seconds)."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import build_causal_lm_folder, tiny_latent_config, tiny_text_config

from configuration_nvembed import NVEmbedConfig
from modeling_nvembed import (
    INSTRUCTION_TEMPLATE,
    NVEmbedModel,
    build_pool_mask,
    format_instruction,
    instruction_length,
)


TEXTS = [
    "gzip compresses files with the deflate algorithm",
    "the fox",
    "a library for parsing command line options and the quick brown fox",
]
INSTRUCTION = format_instruction("Given a query, retrieve relevant passages")


def random_model(family="llama", attn="sdpa", dtype=torch.float32, **config_kwargs):
    config = NVEmbedConfig(
        text_config=tiny_text_config(family), latent_attention_config=tiny_latent_config(), **config_kwargs
    )
    config._attn_implementation = attn
    torch.manual_seed(0)
    return NVEmbedModel(config).to(dtype).eval()


def hidden_states_before_and_after_changing_last_token(model):
    ids = torch.randint(3, 300, (1, 8))
    changed = ids.clone()
    changed[0, -1] = 3 if ids[0, -1] != 3 else 4
    mask = torch.ones_like(ids)
    with torch.no_grad():
        before = model.embedding_model(input_ids=ids, attention_mask=mask).last_hidden_state
        after = model.embedding_model(input_ids=changed, attention_mask=mask).last_hidden_state
    return before, after


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_later_token_changes_earlier_positions(family, attn):
    before, after = hidden_states_before_and_after_changing_last_token(random_model(family, attn))
    assert (before[0, 0] - after[0, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_causal_ablation_keeps_earlier_positions_fixed(attn):
    before, after = hidden_states_before_and_after_changing_last_token(random_model("llama", attn, mask_type="c"))
    assert torch.allclose(before[0, :-1], after[0, :-1], atol=1e-6)


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_padded_batch_matches_texts_encoded_alone(tiny_model, padding_side, attn, dtype, tol):
    tiny_model.embedding_model.config._attn_implementation = attn
    tiny_model.to(dtype)
    tiny_model.tokenizer.padding_side = padding_side
    batch = tiny_model.encode(TEXTS, instruction=INSTRUCTION, batch_size=len(TEXTS))
    alone = torch.stack([tiny_model.encode([t], instruction=INSTRUCTION)[0] for t in TEXTS])
    assert (batch - alone).abs().max() <= tol


def test_embeddings_independent_of_batch_size(tiny_model):
    one = tiny_model.encode(TEXTS, batch_size=1)
    all_ = tiny_model.encode(TEXTS, batch_size=3)
    assert torch.allclose(one, all_, atol=1e-5)
    assert torch.allclose(all_.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)


def test_instruction_excluded_from_pooling_but_seen_by_text(tiny_model):
    tok = tiny_model.tokenizer
    n = instruction_length(tok, INSTRUCTION)
    batch = tiny_model.tokenize(["the fox"], instruction=INSTRUCTION)
    ids = batch["input_ids"][0].tolist()
    plain = tok("the fox")["input_ids"]
    # BOS + instruction occupy exactly the first n positions; the text (and EOS) follow
    assert ids[n:] == plain[1:]
    assert batch["pool_mask"][0, :n].sum() == 0 and batch["pool_mask"][0, n:].all()
    # Text tokens attend to the instruction: their hidden states change when it changes
    other = tiny_model.tokenize(["the fox"], instruction=format_instruction("Classify the sentiment"))
    with torch.no_grad():
        h1 = tiny_model.embedding_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        h2 = tiny_model.embedding_model(input_ids=other["input_ids"], attention_mask=other["attention_mask"])[0]
    assert (h1[0, -1] - h2[0, -1]).abs().max() > 1e-4
    a = tiny_model.encode(["the fox"], instruction=INSTRUCTION)
    b = tiny_model.encode(["the fox"], instruction=format_instruction("Classify the sentiment"))
    assert (a - b).abs().max() > 1e-4


def test_pool_mask_ignores_instruction_hidden_states(tiny_model):
    """Changing the hidden states at instruction positions does not change the pooled vector."""
    batch = tiny_model.tokenize(["the fox"], instruction=INSTRUCTION)
    n = instruction_length(tiny_model.tokenizer, INSTRUCTION)
    with torch.no_grad():
        hidden = tiny_model.embedding_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        noisy = hidden.clone()
        noisy[:, :n] += torch.randn_like(noisy[:, :n])
        assert torch.allclose(tiny_model.pool(hidden, batch["pool_mask"]), tiny_model.pool(noisy, batch["pool_mask"]))


def test_release_style_instruction_with_trailing_space_is_counted_in_context(tiny_model):
    tok = tiny_model.tokenizer
    release = "Instruct: Given a query, retrieve relevant passages\nQuery: "
    n = instruction_length(tok, release)
    full = tok(release + "fox")["input_ids"]
    prefix = tok(release.rstrip(" "))["input_ids"][:-1]  # without EOS
    assert full[:n] == prefix and len(prefix) == n


def test_build_pool_mask_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    assert build_pool_mask(mask, 2).tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1]]


def test_eos_appended_once(tiny_model):
    tok = tiny_model.tokenizer
    batch = tiny_model.tokenize(["the fox"], instruction=INSTRUCTION)
    ids = batch["input_ids"][0].tolist()
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1


def test_truncation_keeps_eos(tiny_model):
    long_text = " ".join(["fox"] * 200)
    batch = tiny_model.tokenize([long_text], max_length=16)
    assert batch["input_ids"].shape[1] == 16
    assert batch["input_ids"][0, -1] == tiny_model.tokenizer.eos_token_id


def test_sentence_transformer_matches_encode(tiny_nvembed_folder, tiny_model):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_nvembed_folder), trust_remote_code=True, device="cpu")
    assert st.prompts["query"] == INSTRUCTION_TEMPLATE.format(
        task="Given a query, retrieve relevant passages that answer the query"
    )
    with_prompt = st.encode(TEXTS, prompt_name="query", convert_to_tensor=True)
    assert (with_prompt - tiny_model.encode(TEXTS, instruction=st.prompts["query"])).abs().max() <= 1e-5
    plain = st.encode(TEXTS, convert_to_tensor=True)
    assert (plain - tiny_model.encode(TEXTS)).abs().max() <= 1e-5
    assert (with_prompt - plain).abs().max() > 1e-4
    # the "similarity" prompt: NV-Embed's STS instruction, for both sides of symmetric use
    assert st.prompts["similarity"] == INSTRUCTION_TEMPLATE.format(task="Retrieve semantically similar text")
    similar = st.encode(TEXTS, prompt_name="similarity", convert_to_tensor=True)
    assert (similar - tiny_model.encode(TEXTS, instruction=st.prompts["similarity"])).abs().max() <= 1e-5


def test_round_trip_in_fresh_process(tiny_nvembed_folder, tiny_model, tmp_path):
    """Only the folder's own files: the modeling code imports nothing from this repository."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_nvembed_folder, copy)
    script = (
        "import json, sys, torch\n"
        "from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "e = m.encode(json.loads(sys.argv[2]), instruction=sys.argv[3])\n"
        "print(json.dumps(e.tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(copy), json.dumps(TEXTS), INSTRUCTION],
        cwd=tmp_path,  # not the repository: its modules must not be importable
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    fresh = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    assert (fresh - tiny_model.encode(TEXTS, instruction=INSTRUCTION)).abs().max() <= 1e-5


def test_weights_use_release_names(tiny_model):
    keys = set(tiny_model.state_dict())
    for name in [
        "embedding_model.embed_tokens.weight",
        "embedding_model.norm.weight",
        "latent_attention_model.latents",
        "latent_attention_model.cross_attend_blocks.0.norm.weight",
        "latent_attention_model.cross_attend_blocks.0.norm_context.weight",
        "latent_attention_model.cross_attend_blocks.0.fn.to_q.weight",
        "latent_attention_model.cross_attend_blocks.0.fn.to_kv.weight",
        "latent_attention_model.cross_attend_blocks.0.fn.to_out.weight",
        "latent_attention_model.cross_attend_blocks.1.norm.weight",
        "latent_attention_model.cross_attend_blocks.1.fn.net.0.weight",
        "latent_attention_model.cross_attend_blocks.1.fn.net.2.weight",
    ]:
        assert name in keys, name
    assert not any(k.startswith("lm_head") for k in keys)


def test_release_config_json_loads(tmp_path):
    """A config.json in the shape NVIDIA released (bidir_mistral text_config, latent_attention model_type)."""
    release = {
        "architectures": ["NVEmbedModel"],
        "model_type": "nvembed",
        "add_eos": True,
        "add_pad_token": True,
        "is_mask_instruction": True,
        "mask_type": "b",
        "padding_side": "right",
        "latent_attention_config": {
            "model_type": "latent_attention",
            "num_latents_value": 16,
            "num_cross_heads": 2,
            "output_normalize": True,
            "hidden_dim": 32,
            "latent_dim": 32,
            "cross_dim_head": 8,
        },
        "text_config": {
            **tiny_text_config("mistral"),
            "model_type": "bidir_mistral",
            "_name_or_path": "nvidia/NV-Embed-v2",
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(release))
    config = NVEmbedConfig.from_pretrained(tmp_path)
    assert config.text_config.model_type == "mistral" and config.latent_attention_config.num_latents_value == 16
    model = NVEmbedModel(config)
    assert model.embedding_model.config.sliding_window is None  # never applied by the released model


def test_gradient_checkpointing_gives_same_gradients(tiny_model):
    batch = tiny_model.tokenize(TEXTS)
    grads = []
    for enabled in (False, True):
        tiny_model.train()
        tiny_model.zero_grad()
        if enabled:
            tiny_model.gradient_checkpointing_enable()
        tiny_model(**batch)["sentence_embeddings"].sum().backward()
        grads.append(tiny_model.embedding_model.embed_tokens.weight.grad.clone())
    assert tiny_model.embedding_model.gradient_checkpointing
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("mode", ["mean", "last_token"])
def test_pooling_ablation_modes_match_hand_computed_pools(mode, padding_side, tiny_causal_lm, tmp_path):
    """mean: average of the text + EOS hidden states (not BOS, instruction or pads); last_token: the EOS state."""
    from convert_to_nvembed import convert

    model = NVEmbedModel.from_pretrained(convert(tiny_causal_lm, tmp_path / mode, pooling_mode=mode)).eval()
    assert model.latent_attention_model is None
    model.tokenizer.padding_side = padding_side
    captured = []
    model.embedding_model.register_forward_hook(
        lambda module, args, kwargs, output: captured.append((kwargs, output.last_hidden_state)), with_kwargs=True
    )
    embeddings = model.encode(TEXTS, instruction=INSTRUCTION, batch_size=len(TEXTS))
    inputs, hidden = captured[0]  # hidden: (B, L, d), rows in encode's order (longest text first)
    order = sorted(range(len(TEXTS)), key=lambda i: -len(TEXTS[i]))
    tok = model.tokenizer
    prefix = tok(INSTRUCTION)["input_ids"][:-1]  # BOS + instruction, without the EOS the tokenizer appends
    L = hidden.shape[1]
    for row, i in enumerate(order):
        ids = tok(INSTRUCTION + TEXTS[i])["input_ids"]
        assert ids[: len(prefix)] == prefix and ids[-1] == tok.eos_token_id
        start = L - len(ids) if padding_side == "left" else 0  # where the row's tokens sit in the padded batch
        assert inputs["input_ids"][row, start : start + len(ids)].tolist() == ids
        assert inputs["attention_mask"][row].sum() == len(ids)
        states = hidden[row, start : start + len(ids)]  # (len, d): this row's non-pad positions
        pooled = states[len(prefix) :].mean(0) if mode == "mean" else states[-1]
        expected = pooled / pooled.norm()
        assert torch.allclose(embeddings[i], expected, atol=1e-5), (i, (embeddings[i] - expected).abs().max())
    assert inputs["attention_mask"].sum() < inputs["attention_mask"].numel()  # some rows are padded


# Bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "texts,error,match",
    [
        ([], ValueError, "empty"),
        (None, TypeError, "None"),
        (["ok", 3], TypeError, r"texts\[1\] is int"),
        (["ok", ""], ValueError, r"texts\[1\] is empty"),
        (("ok", "   "), ValueError, r"texts\[1\] is empty"),
        ({"a": 1}, TypeError, "list of strings"),
    ],
)
def test_bad_texts_raise_clear_errors(tiny_model, texts, error, match):
    with pytest.raises(error, match=match):
        tiny_model.encode(texts)


def test_single_string_gives_one_vector(tiny_model):
    assert tiny_model.encode("the fox").shape == (32,)


def test_max_length_too_small_for_instruction(tiny_model):
    with pytest.raises(ValueError, match="max_length"):
        tiny_model.encode(["the fox"], instruction=INSTRUCTION, max_length=3)


def test_unknown_backbone_type_raises():
    with pytest.raises(ValueError, match="Unknown backbone model_type 'gpt-unknown'"):
        NVEmbedConfig(text_config={"model_type": "gpt-unknown"})


def test_latent_dims_must_fit_backbone():
    with pytest.raises(ValueError, match=r"hidden_size \(32\)"):
        NVEmbedConfig(text_config=tiny_text_config(), latent_attention_config={"hidden_dim": 64, "latent_dim": 64})


def test_missing_gguf_path_raises(tmp_path):
    from convert_to_nvembed import convert

    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        convert(tmp_path / "nope.gguf", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not found"):
        convert(tmp_path / "no-folder", tmp_path / "out")


def test_converter_works_for_other_families(tmp_path):
    from convert_to_nvembed import convert

    for family in ("mistral", "qwen2"):
        src = build_causal_lm_folder(tmp_path / f"{family}-lm", family)
        out = convert(src, tmp_path / f"{family}-nv", num_latents=8, num_heads=2, cross_dim_head=8)
        model = NVEmbedModel.from_pretrained(out)
        assert model.config.text_config.model_type == family
        assert model.encode(["the fox"]).shape == (1, 32)


# The real default backbone -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_smollm2_converts_and_encodes(tmp_path):
    from sentence_transformers import SentenceTransformer

    from convert_to_nvembed import convert

    out = convert(None, tmp_path / "smollm2-nvembed", num_latents=64)
    model = NVEmbedModel.from_pretrained(out).eval()
    assert model.config.text_config.hidden_size == 576
    emb = model.encode(TEXTS, instruction=INSTRUCTION)
    assert emb.shape == (3, 576) and torch.isfinite(emb).all()
    st = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    st_emb = st.encode(TEXTS, prompt_name="query", convert_to_tensor=True)
    assert (st_emb - model.encode(TEXTS, instruction=st.prompts["query"])).abs().max() <= 1e-5
    ids = model.tokenize(["the fox"])["input_ids"][0].tolist()
    assert ids.count(model.tokenizer.eos_token_id) == 1 and ids[-1] == model.tokenizer.eos_token_id


def test_latent_attention_matches_reference_formula():
    """O = softmax(Q K^T / sqrt(dh)) V with Q = LN(H), K = V = LN(latents), then a GEGLU MLP, both residual, then a
    masked mean and L2 normalization (paper section 3.2, the release's block), written out per row."""
    import torch.nn.functional as F

    model = random_model()
    block = model.latent_attention_model
    torch.manual_seed(1)
    hidden = torch.randn(3, 5, 32)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    attn_block, ff_block = block.cross_attend_blocks
    attn = attn_block.fn
    rows = []
    for b in range(3):
        x = attn_block.norm(hidden[b])  # (L, d)
        latents = attn_block.norm_context(block.latents)  # (N, d)
        q = attn.to_q(x).view(5, attn.heads, -1).transpose(0, 1)  # (h, L, dh)
        k, v = attn.to_kv(latents).chunk(2, dim=-1)
        k = k.view(-1, attn.heads, q.shape[-1]).transpose(0, 1)  # (h, N, dh)
        v = v.view(-1, attn.heads, q.shape[-1]).transpose(0, 1)
        weights = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)  # (h, L, N)
        h = hidden[b] + attn.to_out((weights @ v).transpose(0, 1).reshape(5, -1))
        h = h + ff_block.fn(ff_block.norm(h))
        pooled = (h * mask[b, :, None]).sum(0) / mask[b].sum()
        rows.append(F.normalize(pooled, dim=-1))
    with torch.no_grad():
        assert torch.allclose(block(hidden, mask), torch.stack(rows), atol=1e-5)


def test_latent_block_never_reads_unpooled_positions():
    """The block runs on the pooled tokens only: padding/instruction states (here NaN) cannot leak into the output,
    and a batch's embeddings equal each row's alone."""
    model = random_model()
    block = model.latent_attention_model
    torch.manual_seed(2)
    hidden = torch.randn(3, 6, 32)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0]])
    poisoned = hidden.masked_fill(~mask.bool()[..., None], float("nan"))
    with torch.no_grad():
        batch = block(poisoned, mask)
        alone = torch.cat([block(hidden[b : b + 1], mask[b : b + 1]) for b in range(3)])
    assert torch.isfinite(batch).all()
    assert torch.allclose(batch, alone, atol=1e-6)
