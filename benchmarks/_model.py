"""The model the benchmarks time: the bundled SmolLM2-135M converted to NV-Embed once and cached under
`benchmarks/.cache/`, loaded in the device's dtype."""

from pathlib import Path

import torch
from _paths import CACHE


def converted_folder(num_latents: int = 512, cross_dim_head: int | None = None) -> Path:
    """The bundled SmolLM2-135M converted to NV-Embed (latent attention), converted once and cached.

    `cross_dim_head` None is the converter's default (hidden / heads = 72 since commit b75a963); 576 is the release's
    8x-wide shape, which the results recorded before that commit used.
    """
    folder = CACHE / f"smollm2-135m-nvembed-l{num_latents}-dh{cross_dim_head or 'default'}"
    if not (folder / "model.safetensors").is_file():
        from convert_to_nvembed import convert

        convert(None, folder, num_latents=num_latents, cross_dim_head=cross_dim_head)
    return folder


def load_model(folder: Path, device: str = "cpu", dtype: torch.dtype = torch.float32, **kwargs):
    from modeling_nvembed import NVEmbedModel

    model = NVEmbedModel.from_pretrained(str(folder), dtype=dtype, **kwargs)
    return model.to(device).eval()


def pick_dtype(device: str) -> torch.dtype:
    """fp32 on CPU (no native bf16 on most CPUs: see precision.py), bf16 on a GPU."""
    return torch.bfloat16 if device.startswith("cuda") else torch.float32
