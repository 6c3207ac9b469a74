"""NV-Embed configuration.

Field names follow NVIDIA's released NV-Embed-v1/v2 `config.json` so that those files load as they are; the one
difference is that `text_config` may be any decoder family transformers knows (llama, mistral, qwen2, qwen3, ...),
not only Mistral.
"""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import logging


logger = logging.get_logger(__name__)

# NVIDIA's release saves its bidirectional Mistral under a private model_type; the weights are plain Mistral.
_RELEASED_TEXT_MODEL_TYPES = {"bidir_mistral": "mistral", "bidir_llama": "llama", "bidir_qwen2": "qwen2"}


class LatentAttentionConfig(PreTrainedConfig):
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

    num_latents_value: int = 512
    num_cross_heads: int = 8
    output_normalize: bool = True
    hidden_dim: int = 4096
    latent_dim: int = 4096
    cross_dim_head: int = 4096

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        for name in ("num_latents_value", "num_cross_heads", "hidden_dim", "latent_dim", "cross_dim_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"latent_attention_config.{name} must be a positive integer, got {value!r}.")
        if self.latent_dim != self.hidden_dim:
            raise ValueError(
                f"latent_attention_config.latent_dim ({self.latent_dim}) must equal hidden_dim ({self.hidden_dim}): "
                "the released block normalizes the latents with a LayerNorm of width hidden_dim."
            )


class NVEmbedConfig(PreTrainedConfig):
    r"""
    Configuration of an NV-Embed model: a decoder LLM run without its causal mask, followed by latent-attention
    pooling.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*):
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
    """

    model_type = "nvembed"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="mistral"),
        "latent_attention_config": LatentAttentionConfig,
    }

    text_config: dict | PreTrainedConfig | None = None
    latent_attention_config: dict | LatentAttentionConfig | None = None
    padding_side: str = "right"
    add_pad_token: bool = True
    add_eos: bool = True
    is_mask_instruction: bool = True
    mask_type: str = "b"
    pooling_mode: str = "latent_attention"

    def __post_init__(self, **kwargs):
        self.text_config = _resolve_text_config(self.text_config)
        if self.latent_attention_config is None:
            size = self.text_config.hidden_size
            self.latent_attention_config = LatentAttentionConfig(hidden_dim=size, latent_dim=size, cross_dim_head=size)
        elif isinstance(self.latent_attention_config, dict):
            fields = {k: v for k, v in self.latent_attention_config.items() if k != "model_type"}
            self.latent_attention_config = LatentAttentionConfig(**fields)
        super().__post_init__(**kwargs)
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


def _resolve_text_config(text_config) -> PreTrainedConfig:
    """Build the backbone config from a dict (as in config.json), mapping NVIDIA's private model types."""
    if text_config is None:
        return CONFIG_MAPPING["mistral"]()
    if isinstance(text_config, PreTrainedConfig):
        return text_config
    if not isinstance(text_config, dict):
        raise TypeError(f"text_config must be a dict or a PreTrainedConfig, got {type(text_config).__name__}.")
    fields = dict(text_config)
    model_type = fields.pop("model_type", "mistral")
    model_type = _RELEASED_TEXT_MODEL_TYPES.get(model_type, model_type)
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"Unknown backbone model_type {model_type!r} in text_config: transformers has no config for it. "
            "Use a decoder family transformers knows, e.g. 'llama', 'mistral', 'qwen2', 'qwen3'."
        )
    return CONFIG_MAPPING[model_type](**fields)


__all__ = ["LatentAttentionConfig", "NVEmbedConfig"]
