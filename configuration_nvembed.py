"""NV-Embed configuration.

Field names follow NVIDIA's released NV-Embed-v1/v2 `config.json` so that those files load as they are; the one
difference is that `text_config` may be any decoder family transformers knows (llama, mistral, qwen2, qwen3, ...),
not only Mistral.

This file and `modeling_nvembed.py` are the model folder's remote code, run by whatever transformers the user has:
they support transformers `SUPPORTED_TRANSFORMERS` (README "Supported versions"). So the configs are written in the
`__init__` form that 4.x needs (transformers 5.x turns such a subclass into a dataclass itself), and `config.json`
may come from either major version (`_resolve_text_config` translates the rotary-embedding keys).
"""

import re
import sys

import transformers
from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import logging


logger = logging.get_logger(__name__)

# [lowest, first unsupported): the range the version matrix runs (`make compat`). Outside it, loading fails here
# with the versions named rather than somewhere inside transformers. transformers 4.42 is the release NVIDIA's
# NV-Embed-v2 pins; backbones it does not know (qwen3 needs 4.51) fail in `_resolve_text_config`, naming the type.
# sentence-transformers 4.0 to 5.3 strip every text before tokenizing; the folder's `sentence_transformer_nvembed.py`
# undoes that, so the prompt is measured as `encode` measures it. 3.x reads `prompt_length` in another way (untested).
SUPPORTED_TRANSFORMERS = ((4, 42), (6, 0))
SUPPORTED_SENTENCE_TRANSFORMERS = ((4, 0), (7, 0))


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "4.57.6" or "5.0.0.dev0"."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"Cannot read a version number from {version!r}.")
    return int(match.group(1)), int(match.group(2))


def _format_range(supported: tuple[tuple[int, int], tuple[int, int]]) -> str:
    (lo_major, lo_minor), (hi_major, hi_minor) = supported
    return f">={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"


def check_versions(transformers_version: str | None = None, sentence_transformers_version: str | None = None) -> None:
    """Raise ImportError naming the installed and the supported versions when transformers (or an already imported
    sentence-transformers) is outside the range this code is tested with. Versions default to the installed ones."""
    if sentence_transformers_version is None:
        sentence_transformers_version = getattr(sys.modules.get("sentence_transformers"), "__version__", None)
    checks = [("transformers", transformers_version or transformers.__version__, SUPPORTED_TRANSFORMERS)]
    if sentence_transformers_version is not None:
        checks.append(("sentence-transformers", sentence_transformers_version, SUPPORTED_SENTENCE_TRANSFORMERS))
    problems = [
        (f"{name}{_format_range(supported)}", installed)
        for name, installed, supported in checks
        if not supported[0] <= version_tuple(installed) < supported[1]
    ]
    if problems:
        needs = " and ".join(f"{spec} (installed: {installed})" for spec, installed in problems)
        command = " ".join(f'"{spec}"' for spec, _ in problems)
        raise ImportError(f"This NV-Embed model folder's code needs {needs}. Install it with: pip install {command}")


check_versions()
TRANSFORMERS_VERSION = version_tuple(transformers.__version__)

# NVIDIA's release saves its bidirectional Mistral under a private model_type; the weights are plain Mistral.
_RELEASED_TEXT_MODEL_TYPES = {"bidir_mistral": "mistral", "bidir_llama": "llama", "bidir_qwen2": "qwen2"}


class LatentAttentionConfig(PretrainedConfig):
    r"""
    Configuration of NV-Embed's latent-attention pooling block (paper section 3.2).

    Args:
        num_latents_value (`int`, *optional*, defaults to 512):
            Number of trainable latents, the keys and values of the cross-attention.
        num_cross_heads (`int`, *optional*, defaults to 8):
            Number of cross-attention heads.
        output_normalize (`bool`, *optional*, defaults to `True`):
            Whether the pooled embedding is L2-normalized.
        hidden_dim (`int`, *optional*, defaults to 4096):
            Width of the backbone's hidden states (the queries). Must equal `text_config.hidden_size`.
        latent_dim (`int`, *optional*, defaults to 4096):
            Width of the latents. The released block needs `latent_dim == hidden_dim`.
        cross_dim_head (`int`, *optional*, defaults to 4096):
            Width of one attention head; the attention's inner width is `num_cross_heads * cross_dim_head`.
    """

    model_type = "latent_attention"

    def __init__(
        self,
        num_latents_value: int = 512,
        num_cross_heads: int = 8,
        output_normalize: bool = True,
        hidden_dim: int = 4096,
        latent_dim: int = 4096,
        cross_dim_head: int = 4096,
        **kwargs,
    ):
        self.num_latents_value = num_latents_value
        self.num_cross_heads = num_cross_heads
        self.output_normalize = output_normalize
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.cross_dim_head = cross_dim_head
        super().__init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        for name in ("num_latents_value", "num_cross_heads", "hidden_dim", "latent_dim", "cross_dim_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"latent_attention_config.{name} must be a positive integer, got {value!r}.")
        if self.latent_dim != self.hidden_dim:
            raise ValueError(
                f"latent_attention_config.latent_dim ({self.latent_dim}) must equal hidden_dim ({self.hidden_dim}): "
                "the released block normalizes the latents with a LayerNorm of width hidden_dim."
            )


class NVEmbedConfig(PretrainedConfig):
    r"""
    Configuration of an NV-Embed model: a decoder LLM run without its causal mask, followed by latent-attention
    pooling.

    Args:
        text_config (`dict` or `PretrainedConfig`, *optional*):
            Config of the decoder backbone (any `AutoModel` decoder: llama, mistral, qwen2, qwen3, ...). NVIDIA's
            `bidir_mistral` model type is read as `mistral`. Defaults to a Mistral config.
        latent_attention_config (`dict` or `LatentAttentionConfig`, *optional*):
            Config of the pooling block. Its `hidden_dim`/`latent_dim` must equal the backbone's `hidden_size`.
        padding_side (`str`, *optional*, defaults to `"right"`):
            Padding side used by `encode`. The output does not depend on it (tested); kept for the release's format.
        add_pad_token (`bool`, *optional*, defaults to `True`):
            Use the EOS token as pad token when the tokenizer has none.
        add_eos (`bool`, *optional*, defaults to `True`):
            Append the EOS token to every text (kept after truncation, unlike the release, where it could be cut).
        is_mask_instruction (`bool`, *optional*, defaults to `True`):
            Exclude the instruction (and BOS) tokens from the pooling mask; they are still attended to.
        mask_type (`str`, *optional*, defaults to `"b"`):
            `"b"`: bidirectional attention (the paper's model); `"c"`: causal attention (the paper's ablation).
        pooling_mode (`str`, *optional*, defaults to `"latent_attention"`):
            `"latent_attention"` (the paper), or `"mean"` / `"last_token"` for the paper's pooling ablations.
        matryoshka_dimensions (`list[int]`, *optional*):
            The leading sizes trained as embeddings of their own (a Matryoshka loss), ending at the full size; a
            server may then give vectors cut to one of them and re-normalized. `None`: only the full size is trained.
    """

    model_type = "nvembed"
    sub_configs = {"text_config": AutoConfig, "latent_attention_config": LatentAttentionConfig}

    def __init__(
        self,
        text_config: dict | PretrainedConfig | None = None,
        latent_attention_config: dict | LatentAttentionConfig | None = None,
        padding_side: str = "right",
        add_pad_token: bool = True,
        add_eos: bool = True,
        is_mask_instruction: bool = True,
        mask_type: str = "b",
        pooling_mode: str = "latent_attention",
        matryoshka_dimensions: list[int] | None = None,
        **kwargs,
    ):
        self.text_config = _resolve_text_config(text_config)
        if latent_attention_config is None:
            size = self.text_config.hidden_size
            latent_attention_config = LatentAttentionConfig(hidden_dim=size, latent_dim=size, cross_dim_head=size)
        elif isinstance(latent_attention_config, dict):
            fields = {k: v for k, v in latent_attention_config.items() if k != "model_type"}
            latent_attention_config = LatentAttentionConfig(**fields)
        self.latent_attention_config = latent_attention_config
        self.padding_side = padding_side
        self.add_pad_token = add_pad_token
        self.add_eos = add_eos
        self.is_mask_instruction = is_mask_instruction
        self.mask_type = mask_type
        self.pooling_mode = pooling_mode
        self.matryoshka_dimensions = list(matryoshka_dimensions) if matryoshka_dimensions is not None else None
        super().__init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        hidden_size = self.text_config.hidden_size
        latent = self.latent_attention_config
        if latent.hidden_dim != hidden_size or latent.latent_dim != hidden_size:
            raise ValueError(
                f"latent_attention_config.hidden_dim ({latent.hidden_dim}) and latent_dim ({latent.latent_dim}) must "
                f"equal the backbone's text_config.hidden_size ({hidden_size})."
            )
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}.")
        if self.mask_type not in ("b", "c"):
            raise ValueError(f"mask_type must be 'b' (bidirectional) or 'c' (causal), got {self.mask_type!r}.")
        if self.pooling_mode not in ("latent_attention", "mean", "last_token"):
            raise ValueError(
                f"pooling_mode must be one of 'latent_attention', 'mean', 'last_token', got {self.pooling_mode!r}."
            )
        dims = self.matryoshka_dimensions
        if dims is not None and (
            not dims
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= hidden_size for d in dims)
            or dims != sorted(set(dims))
            or dims[-1] != hidden_size
        ):
            raise ValueError(
                f"matryoshka_dimensions must be increasing sizes ending at the embedding size {hidden_size}, "
                f"got {dims!r}."
            )


def _resolve_text_config(text_config) -> PretrainedConfig:
    """Build the backbone config from a dict (as in config.json), mapping NVIDIA's private model types."""
    if text_config is None:
        return CONFIG_MAPPING["mistral"]()
    if isinstance(text_config, PretrainedConfig):
        return text_config
    if not isinstance(text_config, dict):
        raise TypeError(f"text_config must be a dict or a PretrainedConfig, got {type(text_config).__name__}.")
    fields = dict(text_config)
    model_type = fields.pop("model_type", "mistral")
    model_type = _RELEASED_TEXT_MODEL_TYPES.get(model_type, model_type)
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"Unknown backbone model_type {model_type!r} in text_config: transformers {transformers.__version__} has "
            "no config for it. Use a decoder family transformers knows, e.g. 'llama', 'mistral', 'qwen2', 'qwen3'."
        )
    if TRANSFORMERS_VERSION < (5, 0):
        fields = _rope_parameters_to_v4(fields)
    return CONFIG_MAPPING[model_type](**fields)


def _rope_parameters_to_v4(fields: dict) -> dict:
    """transformers 5 saves the rotary embedding as `rope_parameters` = {"rope_type", "rope_theta", ...}; 4.x reads
    `rope_theta` and `rope_scaling` and would silently use its default theta. 5.x reads the 4.x keys itself."""
    rope = fields.pop("rope_parameters", None)
    if rope is None:
        return fields
    if not isinstance(rope, dict) or "rope_theta" not in rope:
        raise ValueError(
            f"text_config.rope_parameters {rope!r} has no single rope_theta (per-layer-type rotary parameters?): "
            f"transformers {transformers.__version__} cannot read it; use transformers>=5."
        )
    fields.setdefault("rope_theta", rope["rope_theta"])
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    if scaling.get("rope_type", "default") != "default":
        fields.setdefault("rope_scaling", scaling)
    return fields


__all__ = ["LatentAttentionConfig", "NVEmbedConfig"]
