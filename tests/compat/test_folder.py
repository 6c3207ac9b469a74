"""The saved model folder under the installed transformers / sentence-transformers (the version matrix, issue 12).

`make compat` runs this module in one venv per supported version pair against folders and vectors written by the
main venv (NVEMBED_COMPAT_REFERENCE, see reference.py); the main venv's own run builds the reference itself. Only the
folders' own code is used (`trust_remote_code`), never this repository's modules.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import TEXTS, build, model_module  # noqa: E402


TOLERANCE = 1e-5


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory) -> Path:
    given = os.environ.get("NVEMBED_COMPAT_REFERENCE")
    if not given:
        return build(tmp_path_factory.mktemp("compat") / "reference")
    path = Path(given)
    if not (path / "reference.json").is_file():
        raise FileNotFoundError(
            f"NVEMBED_COMPAT_REFERENCE={given} has no reference.json; write it with the main venv: "
            "python tests/compat/reference.py DIR"
        )
    return path


@pytest.fixture(scope="session")
def reference(reference_dir) -> dict:
    return json.loads((reference_dir / "reference.json").read_text())


@pytest.fixture(scope="session")
def tiny_model(reference_dir):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(reference_dir / "tiny"), trust_remote_code=True).eval()


@pytest.fixture(scope="session")
def st_model(reference_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(reference_dir / "tiny"), trust_remote_code=True, device="cpu")


def test_installed_versions_are_in_the_supported_range(tiny_model):
    import sentence_transformers
    import transformers

    config_module = sys.modules[type(tiny_model.config).__module__]
    for name, installed, (low, high) in [
        ("transformers", transformers.__version__, config_module.SUPPORTED_TRANSFORMERS),
        ("sentence-transformers", sentence_transformers.__version__, config_module.SUPPORTED_SENTENCE_TRANSFORMERS),
    ]:
        assert low <= config_module.version_tuple(installed) < high, (name, installed)
    print(f"transformers {transformers.__version__}, sentence-transformers {sentence_transformers.__version__}")


def test_folder_code_is_the_folders_own(tiny_model, reference_dir):
    """The model class comes from the folder's files (remote code), not from this checkout's modeling_nvembed."""
    assert type(tiny_model).__module__.startswith("transformers_modules."), type(tiny_model).__module__
    assert not (reference_dir / "tiny" / "chat_template.jinja").exists()
    assert tiny_model.tokenizer.chat_template is None


@pytest.mark.parametrize("folder", ["tiny", "tiny-qwen2", "release"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_encode_matches_main_env(reference_dir, reference, folder, attn, side):
    """AutoModel(...).encode gives the main environment's vectors; `release` is NVIDIA's checkpoint layout."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(reference_dir / folder), trust_remote_code=True).eval()
    if attn == "eager" and model_module(model).TRANSFORMERS_VERSION < (4, 48):
        pytest.skip("transformers < 4.48 picks the attention kernel (sdpa) when the backbone is built, not per call")
    model.embedding_model.config._attn_implementation = attn
    model.tokenizer.padding_side = side
    expected = reference["vectors"][folder]
    query = model.encode(TEXTS, instruction=reference["instruction"], batch_size=3)
    plain = model.encode(TEXTS, batch_size=3)
    assert (query - torch.tensor(expected[f"encode/{attn}/{side}/query"])).abs().max() <= TOLERANCE
    assert (plain - torch.tensor(expected[f"encode/{attn}/{side}/plain"])).abs().max() <= TOLERANCE
    assert (query - plain).abs().max() > 1e-3  # the instruction changes the vectors: the comparison can fail


def test_release_layout_reads_as_mistral_without_sliding_window(reference_dir):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(reference_dir / "release"), trust_remote_code=True)
    text_config = model.config.text_config
    assert text_config.model_type == "mistral"
    # 4.x reads rope_theta, 5.x rope_parameters: either way the checkpoint's value, not the default 10000
    theta = getattr(text_config, "rope_theta", None) or text_config.rope_parameters["rope_theta"]
    assert theta == pytest.approx(50000.0)
    assert model.embedding_model.config.sliding_window is None  # never applied by the released model


def test_sentence_transformer_matches_main_env_and_encode(st_model, tiny_model, reference):
    expected = reference["vectors"]["tiny"]
    query = st_model.encode(TEXTS, prompt_name="query", convert_to_tensor=True).cpu()
    plain = st_model.encode(TEXTS, convert_to_tensor=True).cpu()
    assert (query - torch.tensor(expected["st/query"])).abs().max() <= TOLERANCE
    assert (plain - torch.tensor(expected["st/plain"])).abs().max() <= TOLERANCE
    # and the same as AutoModel's encode in this environment, the instruction excluded from pooling in both
    instruction = st_model.prompts["query"]
    assert instruction.endswith("\n")  # the character sentence-transformers < 5.4 stripped before measuring the prompt
    assert (query - tiny_model.encode(TEXTS, instruction=instruction)).abs().max() <= TOLERANCE
    assert (plain - tiny_model.encode(TEXTS)).abs().max() <= TOLERANCE
    # texts are taken as given, surrounding whitespace included, as `encode` takes them
    spaced = ["  the fox\n", "\tgzip compresses files "]
    for prompt in (instruction, None):
        vectors = st_model.encode(spaced, prompt=prompt, convert_to_tensor=True).cpu()
        assert (vectors - tiny_model.encode(spaced, instruction=prompt or "")).abs().max() <= TOLERANCE


def test_sentence_transformer_module_is_the_folders_own(st_model):
    """modules.json names the folder's `sentence_transformer_nvembed.NVEmbedTransformer`: before 5.4 a subclass (from
    the folder's file, tokenizing texts unstripped); from 5.4 on the library's own Transformer."""
    import sentence_transformers
    from sentence_transformers.util import import_from_string

    first = st_model[0]
    library = import_from_string("sentence_transformers.models.Transformer")
    config_module = sys.modules[type(first.auto_model.config).__module__]
    if config_module.version_tuple(sentence_transformers.__version__) < (5, 4):
        assert type(first).__name__ == "NVEmbedTransformer" and type(first) is not library
        assert type(first).__module__.startswith("transformers_modules."), type(first).__module__
    else:
        assert type(first) is library
    assert st_model.tokenize([" the fox\n"])["input_ids"][0].tolist() == first.tokenizer(" the fox\n")["input_ids"]


def test_folder_loads_with_only_its_own_files(reference_dir, tmp_path):
    """In a process where this checkout is not importable (isolated mode, another working folder), AutoModel and
    SentenceTransformer load the folder and agree: transformers < 4.44 checks a remote file's imports with a regular
    expression, which once asked for the checkout's `configuration_nvembed` as an installed package."""
    script = (
        "import json, sys\n"
        "from sentence_transformers import SentenceTransformer\n"
        "from transformers import AutoModel\n"
        "model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n"
        "st = SentenceTransformer(sys.argv[1], trust_remote_code=True, device='cpu')\n"
        "texts = json.loads(sys.argv[2])\n"
        "a = st.encode(texts, prompt_name='query', convert_to_tensor=True)\n"
        "b = model.encode(texts, instruction=st.prompts['query'])\n"
        "files = [str(getattr(m, '__file__', None)) for m in list(sys.modules.values())]\n"
        "print(json.dumps({'diff': float((a - b).abs().max()), 'files': [f for f in files if 'nvembed' in f]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script, str(reference_dir / "tiny"), json.dumps(TEXTS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,  # seconds on a quiet machine; generous for a loaded one
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["diff"] <= TOLERANCE
    checkout = Path(__file__).resolve().parents[2]
    assert found["files"] and not [f for f in found["files"] if Path(f).parent == checkout], found["files"]


def test_sentence_transformer_reads_plain_text_not_chat_messages(st_model):
    """The tokenizer had a chat template (as SmolLM2's does); the folder carries none, so no version renders inputs
    through one: the tokens are exactly the tokenizer's, BOS + text + EOS."""
    first = st_model[0]
    assert "message" not in getattr(first, "modality_config", {})
    features = st_model.tokenize(["the fox"])
    tokenizer = first.tokenizer
    assert features["input_ids"][0].tolist() == tokenizer("the fox")["input_ids"]


def test_instruction_tokens_are_not_pooled_and_eos_is(tiny_model, reference):
    """The vector is the normalized mean of the per-token outputs after BOS + instruction, EOS included."""
    instruction = reference["instruction"]
    batch = tiny_model.tokenize(TEXTS, instruction=instruction)
    n = model_module(tiny_model).instruction_length(tiny_model.tokenizer, instruction)
    assert n > 1
    eos = tiny_model.tokenizer.eos_token_id
    with torch.no_grad():
        out = tiny_model(**batch)
    for row in range(len(TEXTS)):
        length = int(batch["attention_mask"][row].sum())
        ids = batch["input_ids"][row, :length].tolist()
        assert ids[-1] == eos and ids.count(eos) == 1
        assert batch["pool_mask"][row, :n].sum() == 0 and batch["pool_mask"][row, n:length].all()
        pooled = out.last_hidden_state[row, n:length].mean(0)
        assert torch.allclose(out.sentence_embeddings[row], pooled / pooled.norm(), atol=TOLERANCE)
        with_instruction = out.last_hidden_state[row, :length].mean(0)
        assert not torch.allclose(out.sentence_embeddings[row], with_instruction / with_instruction.norm(), atol=1e-3)


BIDIRECTIONAL_TEXTS = ["the quick brown fox jumps", "the quick brown fox sleeps", "the fox"]


def first_token_change(model, attn: str, side: str) -> float:
    """How much the first token's output differs between two texts that differ only in their last word, batched
    with a shorter text (so rows are padded on `side`). Zero under a causal mask."""
    model.embedding_model.config._attn_implementation = attn
    model.tokenizer.padding_side = side
    batch = model.tokenize(BIDIRECTIONAL_TEXTS)
    first = batch["attention_mask"].long().argmax(dim=1)  # first non-pad position of each row
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    first_states = states[torch.arange(len(BIDIRECTIONAL_TEXTS)), first]  # (3, d): BOS, the same input in each row
    return float((first_states[0] - first_states[1]).abs().max())


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_attention_is_bidirectional(tiny_model, attn, side):
    """A later token changes the first token's output (it cannot under a causal mask, see the next test), in a padded
    batch; the padded batch gives the same vectors as each text alone (pads are not attended to)."""
    try:
        assert first_token_change(tiny_model, attn, side) > 1e-4
        batched = tiny_model.encode(BIDIRECTIONAL_TEXTS, batch_size=3)
        alone = torch.cat([tiny_model.encode([text]) for text in BIDIRECTIONAL_TEXTS])
        assert (batched - alone).abs().max() <= TOLERANCE
    finally:
        tiny_model.tokenizer.padding_side = "right"
        tiny_model.embedding_model.config._attn_implementation = "sdpa"


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_causal_ablation_keeps_first_token_fixed(reference_dir, attn):
    """The control for the test above: with the causal mask (`mask_type="c"`) the same measure is zero."""
    from transformers import AutoModel

    causal = AutoModel.from_pretrained(str(reference_dir / "tiny"), trust_remote_code=True, mask_type="c").eval()
    assert causal.config.mask_type == "c"
    assert first_token_change(causal, attn, "right") <= 1e-6


def test_backbone_mask_per_release(tiny_model):
    """transformers >= 5.2 gets the 2D padding mask (it reads `is_causal=False` itself); older releases get a 4D
    additive mask that blocks only pad keys, and attention kernels that cannot take one are refused by name."""
    module = model_module(tiny_model)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    backbone_mask = tiny_model.backbone_attention_mask(mask)
    if module.BACKBONE_READS_IS_CAUSAL:
        assert backbone_mask is mask
        return
    blocked = torch.finfo(torch.float32).min
    assert backbone_mask.shape == (2, 1, 3, 3)
    assert backbone_mask[0, 0].tolist() == [[0.0, 0.0, blocked]] * 3 and backbone_mask[1].eq(0).all()
    config = tiny_model.embedding_model.config
    previous = config._attn_implementation
    try:
        config._attn_implementation = "flash_attention_2"
        with pytest.raises(ValueError, match=r"attn_implementation='flash_attention_2' needs transformers>=5.2"):
            tiny_model.backbone_attention_mask(mask)
    finally:
        config._attn_implementation = previous


def test_too_old_transformers_fails_at_once_naming_both_versions(reference_dir):
    """Loading the folder in a process whose transformers reports 4.41.2 stops in the folder's config code with one
    clear ImportError, not somewhere inside transformers."""
    script = (
        "import sys, transformers\n"
        "transformers.__version__ = '4.41.2'\n"
        "from transformers import AutoConfig\n"  # what AutoModel.from_pretrained loads first; no torch import
        "AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(reference_dir / "tiny")],
        capture_output=True,
        text=True,
        timeout=600,  # seconds on a quiet machine; generous for a loaded one
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: This NV-Embed model folder's code needs transformers>=4.42,<6.0 "), last
    assert "(installed: 4.41.2)" in last


@pytest.mark.parametrize(
    "transformers_version,st_version,message",
    [
        ("6.0.0", None, r"needs transformers>=4.42,<6.0 \(installed: 6.0.0\)\."),
        (
            None,
            "3.4.1",
            r"needs sentence-transformers>=4.0,<7.0 \(installed: 3.4.1\)\. "
            r'Install it with: pip install "sentence-transformers>=4.0,<7.0"$',
        ),
        ("4.40.0", "7.1.0", r"transformers>=4.42,<6.0 \(installed: 4.40.0\) and sentence-transformers>=4.0,<7.0"),
    ],
)
def test_version_check_names_installed_and_required(tiny_model, transformers_version, st_version, message):
    config_module = sys.modules[type(tiny_model.config).__module__]
    with pytest.raises(ImportError, match=message):
        config_module.check_versions(transformers_version, st_version)
