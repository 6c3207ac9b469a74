"""The CUDA paths on the tiny NV-Embed folder: bf16 on the GPU against fp32 on the CPU, and sdpa against eager
attention on the GPU. Marked `cuda`: skipped without a GPU; `make gpu-check` runs them (benchmarks/gpu_check.py)."""

import pytest
import torch
import torch.nn.functional as F
from conftest import CORPUS


pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)"),
]


def embed(folder, device: str, dtype: torch.dtype, kernel: str = "sdpa") -> torch.Tensor:
    from modeling_nvembed import NVEmbedModel

    model = NVEmbedModel.from_pretrained(folder, dtype=dtype, attn_implementation=kernel).to(device).eval()
    batch = model.tokenizer(CORPUS, padding=True, return_tensors="pt").to(device)
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["sentence_embeddings"]


def test_bf16_on_cuda_embeds_like_fp32_on_cpu(tiny_nvembed_folder):
    reference = embed(tiny_nvembed_folder, "cpu", torch.float32)
    on_gpu = embed(tiny_nvembed_folder, "cuda", torch.bfloat16).float().cpu()
    assert F.cosine_similarity(reference, on_gpu).min() > 0.99


def test_sdpa_and_eager_attention_agree_on_cuda(tiny_nvembed_folder):
    sdpa = embed(tiny_nvembed_folder, "cuda", torch.float32, "sdpa")
    eager = embed(tiny_nvembed_folder, "cuda", torch.float32, "eager")
    assert (sdpa - eager).abs().max() < 1e-4
