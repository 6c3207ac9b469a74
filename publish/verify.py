"""Check a staged model folder the way a Hub user will load it; run as a script in a fresh process.

    python publish/verify.py STAGED_DIR

Prints one JSON line: {"ok", "errors", "max_abs_diff", "dim"}. Checks: the README.md metadata parses (library,
pipeline tag, widget), `AutoModel(trust_remote_code=True).encode` and
`SentenceTransformer(...).encode(prompt_name=...)` both run and agree within `TOLERANCE`, and the vectors are finite
and unit-norm. It imports nothing from this repository, so the folder's own modeling code is what runs.
"""

import json
import sys
import traceback
from pathlib import Path


TOLERANCE = 1e-5
QUERIES = ["how do I compress a file on the command line?", "which daemon keeps the clock in sync"]
FALLBACK_PASSAGES = ["gzip compresses files with the deflate algorithm", "the quick brown fox jumps over the lazy dog"]


def check_card(folder: Path, errors: list[str]) -> list[str]:
    """Parse README.md as the Hub does; return the widget's passages (the texts encoded below)."""
    from huggingface_hub import ModelCard

    readme = folder / "README.md"
    if not readme.is_file():
        errors.append("README.md is missing.")
        return FALLBACK_PASSAGES
    data = ModelCard.load(readme).data
    for key, expected in [("library_name", "sentence-transformers"), ("pipeline_tag", "sentence-similarity")]:
        if data.get(key) != expected:
            errors.append(f"README.md metadata {key} is {data.get(key)!r}, expected {expected!r}.")
    widget = data.get("widget") or []
    if not widget or not widget[0].get("source_sentence") or not widget[0].get("sentences"):
        errors.append(f"README.md metadata has no sentence-similarity widget example: {widget!r}.")
        return FALLBACK_PASSAGES
    return list(widget[0]["sentences"])


def check_models(folder: Path, passages: list[str], errors: list[str]) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    prompts = st.prompts
    if "query" not in prompts:
        errors.append(f"config_sentence_transformers.json has no 'query' prompt: {sorted(prompts)}.")
        return {}
    model = AutoModel.from_pretrained(str(folder), trust_remote_code=True).eval()
    with torch.inference_mode():
        auto = torch.cat(
            [
                model.encode(QUERIES, instruction=prompts["query"]),
                model.encode(passages, instruction=prompts.get("document", "")),
            ]
        )
    st_vectors = (
        torch.cat(
            [
                st.encode(QUERIES, prompt_name="query", convert_to_tensor=True),
                st.encode(passages, prompt_name="document" if "document" in prompts else None, convert_to_tensor=True),
            ]
        )
        .float()
        .cpu()
    )
    auto = auto.float().cpu()
    if auto.shape != st_vectors.shape:
        errors.append(f"AutoModel gives shape {tuple(auto.shape)}, SentenceTransformer {tuple(st_vectors.shape)}.")
        return {}
    diff = (auto - st_vectors).abs().max().item()
    if not torch.isfinite(auto).all():
        errors.append("AutoModel.encode returned non-finite values.")
    if diff > TOLERANCE:
        errors.append(f"AutoModel and SentenceTransformer disagree: max abs diff {diff:.3g} > {TOLERANCE}.")
    norms = auto.norm(dim=-1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
        errors.append(f"Embeddings are not L2-normalized (norms {norms.tolist()}).")
    return {"max_abs_diff": diff, "dim": auto.shape[-1]}


def verify(folder: str | Path) -> dict:
    folder = Path(folder)
    errors: list[str] = []
    report: dict = {}
    try:
        passages = check_card(folder, errors)
    except Exception as e:  # any parse error is a finding, not a crash
        errors.append(f"README.md metadata does not parse: {type(e).__name__}: {e}")
        passages = FALLBACK_PASSAGES
    try:
        report = check_models(folder, passages, errors)
    except Exception as e:
        errors.append(f"Loading or encoding failed: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
    return {"ok": not errors, "errors": errors, **report}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(json.dumps(verify(sys.argv[1])))
