"""NV-Embed: a decoder LLM as a generalist text-embedding model.

Reference: Lee et al., "NV-Embed: Improved Techniques for Training LLMs as Generalist Embedding Models", ICLR 2025.

    tokens -> decoder backbone with no causal mask (every token sees every non-pad token)
           -> latent-attention block: hidden states attend to trainable latents, then a GEGLU MLP
           -> mean over the pooling mask (text + EOS; the instruction is attended to but not pooled)
           -> L2 normalization

Weights are named as in NVIDIA's release (`embedding_model.*`, `latent_attention_model.*`), so a released
NV-Embed-v1/v2 checkpoint loads with this file. This file imports only torch and transformers: it is loaded as remote
code, file by file, by whatever transformers the user has (4.42 to 5.x, `configuration_nvembed.SUPPORTED_TRANSFORMERS`;
the differences between releases are handled where they occur: `BACKBONE_READS_IS_CAUSAL`, `init`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import ModelOutput, logging


try:  # loaded as remote code (a package of the model folder's files)
    from .configuration_nvembed import TRANSFORMERS_VERSION, LatentAttentionConfig, NVEmbedConfig, check_versions
except ImportError:  # imported from a checkout of the repository, where the file is a top-level module
    # `import ... as`, not `from ... import`: transformers < 4.44 scans this file's imports with a regular expression
    # that keeps an except block's `from X import` and then asks for X as an installed package.
    import configuration_nvembed as _configuration

    TRANSFORMERS_VERSION = _configuration.TRANSFORMERS_VERSION
    LatentAttentionConfig = _configuration.LatentAttentionConfig
    NVEmbedConfig = _configuration.NVEmbedConfig
    check_versions = _configuration.check_versions

try:  # transformers 5: initializers that leave weights loaded from the checkpoint alone
    from transformers import initialization as init
except ImportError:  # transformers 4 skips modules whose weights were all loaded before calling _init_weights
    from torch.nn import init


logger = logging.get_logger(__name__)

# Query format of the paper, ending in "\n" rather than the release's "Query: ": a trailing space merges into the
# text's first token, so a prompt's token count (what sentence-transformers measures) would be off by one.
# `instruction_length` still handles the release's form. Passages get no instruction.
INSTRUCTION_TEMPLATE = "Instruct: {task}\nQuery:\n"


def format_instruction(task: str) -> str:
    """Turn a task description into the query instruction (`INSTRUCTION_TEMPLATE`)."""
    return INSTRUCTION_TEMPLATE.format(task=task)


def ensure_tokenizer_appends_eos(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make `tokenizer(text)` end with EOS, so `encode`, sentence-transformers and training all add it exactly once.

    The tokenizer's own post-processor adds it, which also keeps EOS after truncation to `max_length`.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(f"The tokenizer ({type(tokenizer).__name__}) has no EOS token; NV-Embed appends one.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    probe = tokenizer("a")["input_ids"]
    if probe[-1] == tokenizer.eos_token_id:
        return tokenizer
    if not hasattr(type(tokenizer), "add_eos_token"):
        raise ValueError(
            f"Cannot make {type(tokenizer).__name__} append EOS: it is not a fast (tokenizers) tokenizer."
        )
    adds_bos = tokenizer.bos_token_id is not None and probe[0] == tokenizer.bos_token_id
    tokenizer.add_bos_token = adds_bos
    tokenizer.add_eos_token = True
    if tokenizer("a")["input_ids"][-1] != tokenizer.eos_token_id:
        raise ValueError(f"Setting add_eos_token on {type(tokenizer).__name__} did not make it append EOS.")
    return tokenizer


def instruction_length(tokenizer: PreTrainedTokenizerBase, instruction: str) -> int:
    """Number of leading tokens (BOS included) that `instruction` occupies at the start of `instruction + text`.

    Trailing spaces are left out before counting: "Query: " + "text" tokenizes as [..., ":", " text"], so the space
    belongs to the text's first token (with BPE and sentencepiece tokenizers alike).
    """
    if not instruction:
        return 0
    ids = tokenizer(instruction.rstrip(" "))["input_ids"]
    if ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    return len(ids)


def build_pool_mask(attention_mask: torch.Tensor, instruction_length: int) -> torch.Tensor:
    """The pooling mask: the attention mask without its first `instruction_length` non-pad tokens.

    Works for left and right padding: the instruction starts at each row's first non-pad position.
    """
    pool_mask = attention_mask.clone()
    if instruction_length > 0:
        B, L = attention_mask.shape
        positions = torch.arange(L, device=attention_mask.device).expand(B, L)  # (B, L)
        first = attention_mask.long().argmax(dim=1, keepdim=True)  # (B, 1) first non-pad position
        pool_mask[positions < first + instruction_length] = 0
    return pool_mask


# transformers >= 5.2 makes the backbone's mask bidirectional from `config.is_causal = False` (masking_utils). Older
# releases (4.x, 5.0, 5.1) build a causal mask from a 2D padding mask whatever the config says, and use a 4D mask as
# given (llama/mistral/qwen2 from 4.42, qwen3 in 4.51 to 4.52: `_update_causal_mask`; 4.53 to 5.1:
# `masking_utils._preprocess_mask_arguments`), so there the model passes its own 4D mask.
BACKBONE_READS_IS_CAUSAL = TRANSFORMERS_VERSION >= (5, 2)
_OWN_MASK_ATTENTION = ("eager", "sdpa")  # kernels that take an additive 4D mask on those releases


def bidirectional_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) padding mask -> (B, 1, L, L) additive mask in which every position attends to every non-pad position.

    Pad rows attend to the real tokens too (as transformers' own bidirectional mask does), so no row is all -inf.
    """
    B, L = attention_mask.shape
    blocked = (attention_mask == 0)[:, None, None, :]  # (B, 1, 1, L): pad keys
    mask = torch.zeros(B, 1, 1, L, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill(blocked, torch.finfo(dtype).min).expand(B, 1, L, L)  # (B, 1, L, L), a view


def masked_mean(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden_states` (B, L, d) over positions where `mask` (B, L) is 1, accumulated in float32."""
    mask = mask.unsqueeze(-1).to(torch.float32)  # (B, L, 1)
    summed = (hidden_states.to(torch.float32) * mask).sum(dim=1)  # (B, d)
    return summed / mask.sum(dim=1).clamp(min=1.0)


def last_token(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at each row's last position where `mask` is 1 (the EOS token), for the pooling ablation."""
    L = mask.shape[1]
    positions = torch.arange(L, device=mask.device)
    last = (mask.long() * positions).argmax(dim=1)  # (B,)
    return hidden_states[torch.arange(hidden_states.shape[0], device=mask.device), last].to(torch.float32)


class NVEmbedCrossAttention(nn.Module):
    """Multi-head cross-attention; the released layout: `to_q`, a fused `to_kv`, `to_out`, no biases."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, query_dim, bias=False)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, L, _ = hidden_states.shape
        N = context.shape[1]
        q = self.to_q(hidden_states).view(B, L, self.heads, -1).transpose(1, 2)  # (B, h, L, dh)
        # The context (the latents) is the same for every row: project it once, not B times as the release does.
        k, v = self.to_kv(context).chunk(2, dim=-1)  # (1, N, inner) each
        k = k.view(1, N, self.heads, -1).transpose(1, 2).expand(B, -1, -1, -1)  # (B, h, N, dh), a view
        v = v.view(1, N, self.heads, -1).transpose(1, 2).expand(B, -1, -1, -1)  # (B, h, N, dh), a view
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, L, dh): every token attends to all latents
        return self.to_out(out.transpose(1, 2).reshape(B, L, -1))  # (B, L, d)


class NVEmbedGEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gates = x.chunk(2, dim=-1)
        return x * F.gelu(gates)


class NVEmbedFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), NVEmbedGEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NVEmbedPreNorm(nn.Module):
    """LayerNorm before `fn`; with `context_dim`, the context (the latents) gets its own LayerNorm."""

    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_context is None:
            return self.fn(self.norm(x))
        return self.fn(self.norm(x), context=self.norm_context(context))


class NVEmbedLatentAttentionModel(nn.Module):
    """Latent-attention pooling (paper section 3.2): Q = hidden states, K = V = trainable latents, then an MLP,
    each pre-normalized and residual; then a masked mean and L2 normalization."""

    def __init__(self, config: LatentAttentionConfig):
        super().__init__()
        dim = config.hidden_dim
        attention = NVEmbedCrossAttention(config.latent_dim, dim, config.num_cross_heads, config.cross_dim_head)
        self.cross_attend_blocks = nn.ModuleList(
            [
                NVEmbedPreNorm(config.latent_dim, attention, context_dim=dim),
                NVEmbedPreNorm(config.latent_dim, NVEmbedFeedForward(config.latent_dim)),
            ]
        )
        self.latents = nn.Parameter(torch.randn(config.num_latents_value, config.latent_dim))
        self.output_normalize = config.output_normalize

    def blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """(1, T, d) -> (1, T, d): cross-attention to the latents and the MLP, each residual."""
        cross_attn, cross_ff = self.cross_attend_blocks
        latents = self.latents.to(tokens.dtype).unsqueeze(0)  # (1, N, d)
        tokens = tokens + cross_attn(tokens, context=latents)
        return tokens + cross_ff(tokens)

    def forward(self, hidden_states: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        # Every step of the block acts on each token alone (the latents are the same for every row), so it runs only on
        # the tokens that are pooled, packed into one sequence: padding and instruction tokens cost nothing, and the
        # result equals running it on (B, L) and masking the mean.
        B, _, d = hidden_states.shape
        keep = pool_mask.bool()
        tokens = self.blocks(hidden_states[keep].unsqueeze(0))  # (1, T, d), T = pooled tokens in the batch
        rows = keep.nonzero()[:, 0]  # (T,) the row each packed token came from
        sums = tokens.new_zeros(B, d, dtype=torch.float32).index_add_(0, rows, tokens[0].to(torch.float32))
        embeddings = sums / keep.sum(dim=1, keepdim=True).clamp(min=1)  # (B, d), float32: the masked mean
        return F.normalize(embeddings, p=2, dim=-1) if self.output_normalize else embeddings

    def token_embeddings(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, L, d): the block's output at every non-pad position (zeros at pads), before the mean.

        Their mean over the pooling mask, L2-normalized, is `forward`'s embedding: what sentence-transformers'
        Pooling(mean, include_prompt=False) + Normalize compute from `last_hidden_state`.
        """
        keep = attention_mask.bool()
        out = hidden_states.new_zeros(hidden_states.shape)
        out[keep] = self.blocks(hidden_states[keep].unsqueeze(0))[0]  # (T, d) scattered back to (B, L, d)
        return out


@dataclass
class NVEmbedModelOutput(ModelOutput):
    """Output of `NVEmbedModel.forward`.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            Per-token vectors whose mean over the pooling mask is the embedding: the latent-attention block's output
            (`pooling_mode="latent_attention"`) or the backbone's hidden states (`"mean"`, `"last_token"`); zeros at
            padding for the block. sentence-transformers' Pooling + Normalize modules read it (the folder's
            `modules.json`); first field, so it is also `outputs[0]`, where per-token states usually are.
        sentence_embeddings (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The pooled embedding, float32, L2-normalized when `latent_attention_config.output_normalize`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    sentence_embeddings: torch.FloatTensor | None = None


class NVEmbedPreTrainedModel(PreTrainedModel):
    config_class = NVEmbedConfig
    base_model_prefix = "nvembed"
    supports_gradient_checkpointing = True
    _no_split_modules = ["NVEmbedLatentAttentionModel"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, NVEmbedLatentAttentionModel):
            init.normal_(module.latents, mean=0.0, std=1.0)  # the release draws the latents from randn


class NVEmbedModel(NVEmbedPreTrainedModel):
    """NV-Embed: `forward` returns `{"sentence_embeddings": (B, d)}`; `encode(texts, instruction=...)` is the
    release's inference API.

    Example:
        ```python
        >>> from transformers import AutoModel
        >>> model = AutoModel.from_pretrained("path/to/nvembed", trust_remote_code=True)
        >>> task = "Given a question, retrieve passages that answer it"
        >>> queries = model.encode(["how do I compress files?"], instruction=format_instruction(task))
        >>> passages = model.encode(["gzip is a compression utility."])
        >>> scores = queries @ passages.T
        ```
    """

    def __init__(self, config: NVEmbedConfig):
        check_versions()  # again: sentence-transformers may have been imported after this folder's code was
        super().__init__(config)
        text_config = config.text_config
        bidirectional = config.mask_type == "b"
        text_config.is_causal = not bidirectional
        if bidirectional and getattr(text_config, "sliding_window", None) is not None:
            text_config.sliding_window = None  # the released bidirectional model never applies its sliding window
        self.embedding_model = AutoModel.from_config(text_config)
        if bidirectional:
            # sdpa and flash-attention read the attention module's own flag when no mask tensor is passed
            for module in self.embedding_model.modules():
                if hasattr(module, "is_causal"):
                    module.is_causal = False
        self._no_split_modules = list(self._no_split_modules) + list(self.embedding_model._no_split_modules or [])
        self.latent_attention_model = (
            NVEmbedLatentAttentionModel(config.latent_attention_config)
            if config.pooling_mode == "latent_attention"
            else None
        )
        self.tokenizer = None
        self.post_init()

    def get_input_embeddings(self):
        return self.embedding_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.embedding_model.set_input_embeddings(value)

    def pool(self, hidden_states: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, d) hidden states -> (B, d) float32 embeddings, as `config.pooling_mode` says."""
        mode = self.config.pooling_mode
        if mode == "latent_attention":
            return self.latent_attention_model(hidden_states, pool_mask)
        return self._normalize(
            masked_mean(hidden_states, pool_mask) if mode == "mean" else last_token(hidden_states, pool_mask)
        )

    def _normalize(self, embeddings: torch.Tensor) -> torch.Tensor:
        normalize = self.config.latent_attention_config.output_normalize
        return F.normalize(embeddings, p=2, dim=-1) if normalize else embeddings

    def backbone_attention_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The mask handed to the backbone: the 2D padding mask where transformers makes it bidirectional itself
        (`BACKBONE_READS_IS_CAUSAL`) or the model is causal; otherwise a 4D bidirectional mask."""
        if self.config.mask_type != "b" or BACKBONE_READS_IS_CAUSAL or attention_mask.dim() != 2:
            return attention_mask
        attn_implementation = self.embedding_model.config._attn_implementation
        if attn_implementation not in _OWN_MASK_ATTENTION:
            raise ValueError(
                f"Bidirectional attention with attn_implementation={attn_implementation!r} needs transformers>=5.2 "
                f"(installed: {transformers.__version__}); with this version use one of {_OWN_MASK_ATTENTION}."
            )
        return bidirectional_attention_mask(attention_mask, self.get_input_embeddings().weight.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pool_mask: torch.Tensor | None = None,
        prompt_length: int | torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> NVEmbedModelOutput:
        """Args:
        pool_mask: (B, L) positions to pool; defaults to `attention_mask` without the first `prompt_length` tokens.
        prompt_length: tokens of the instruction (BOS included), as sentence-transformers passes it for a prompt.
        token_type_ids: ignored (decoders have no segments); sentence-transformers passes what the tokenizer returns.

        Returns:
            `NVEmbedModelOutput`: `sentence_embeddings` (B, d) and the per-token `last_hidden_state` (B, L, d) they
            are the pooled mean of (the last pooled token for `pooling_mode="last_token"`).
        """
        backbone_mask = self.backbone_attention_mask(attention_mask)
        outputs = self.embedding_model(input_ids=input_ids, attention_mask=backbone_mask, use_cache=False, **kwargs)
        if pool_mask is None:
            if isinstance(prompt_length, torch.Tensor):  # sentence-transformers' collator: one value per row
                prompt_length = int(prompt_length.reshape(-1)[0])
            n_instruction = prompt_length if (prompt_length and self.config.is_mask_instruction) else 0
            pool_mask = build_pool_mask(attention_mask, n_instruction)
        hidden_states = outputs.last_hidden_state  # (B, L, d)
        if self.config.pooling_mode == "latent_attention":
            hidden_states = self.latent_attention_model.token_embeddings(hidden_states, attention_mask)
        pool = last_token if self.config.pooling_mode == "last_token" else masked_mean
        output = NVEmbedModelOutput(
            last_hidden_state=hidden_states, sentence_embeddings=self._normalize(pool(hidden_states, pool_mask))
        )
        return output if return_dict else output.to_tuple()

    # Inference API of the release --------------------------------------------------------------------------------

    def set_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Attach the tokenizer `encode` uses; it is made to append EOS when `config.add_eos` is set."""
        if self.config.add_eos:
            tokenizer = ensure_tokenizer_appends_eos(tokenizer)
        elif tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = self.config.padding_side
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        # The release loads its tokenizer from text_config._name_or_path (the Hub); offline it must come from
        # the checkpoint folder itself.
        token_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
        try:
            # This file already runs as the folder's code, so reading its config to find the tokenizer is trusted.
            tokenizer = AutoTokenizer.from_pretrained(
                pretrained_model_name_or_path, trust_remote_code=True, **token_kwargs
            )
        except (OSError, ValueError) as err:
            logger.warning(
                f"No tokenizer in {pretrained_model_name_or_path} ({err}); call set_tokenizer() before encode()."
            )
        else:
            model.set_tokenizer(tokenizer)
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)

    def tokenize(self, texts: list[str], instruction: str = "", max_length: int = 4096) -> dict[str, torch.Tensor]:
        """Tokenize `instruction + text` for each text: EOS appended (kept when truncating), padded, with the pooling
        mask that leaves out BOS and the instruction."""
        if self.tokenizer is None:
            raise ValueError(
                "This model has no tokenizer: load it with from_pretrained(folder) or call set_tokenizer()."
            )
        texts = _check_texts(texts)
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a string, got {type(instruction).__name__}.")
        n_instruction = instruction_length(self.tokenizer, instruction) if self.config.is_mask_instruction else 0
        if max_length < n_instruction + 2:
            raise ValueError(
                f"max_length={max_length} leaves no room for text: the instruction alone takes {n_instruction} tokens."
            )
        batch = self.tokenizer(
            [instruction + text for text in texts],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        batch["pool_mask"] = build_pool_mask(batch["attention_mask"], n_instruction)
        return batch

    @torch.no_grad()
    def encode(
        self, prompts: list[str] | str, instruction: str = "", max_length: int = 4096, batch_size: int = 32, **kwargs
    ) -> torch.Tensor:
        """Embed texts; `instruction` is prepended to each text, attended to, and excluded from pooling.

        Texts longer than `max_length` tokens (instruction and EOS included) are truncated; EOS is always kept.
        Texts are batched in order of length, which changes nothing in the output (no causal mask, pads ignored).

        Returns:
            `torch.Tensor` of shape (len(prompts), d), float32 and L2-normalized; (d,) for a single string.
        """
        single = isinstance(prompts, str)
        texts = _check_texts([prompts] if single else prompts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        device = next(self.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks = []
        for start in range(0, len(order), batch_size):
            batch = self.tokenize([texts[i] for i in order[start : start + batch_size]], instruction, max_length)
            batch = {k: v.to(device) for k, v in batch.items()}
            chunks.append(self(**batch)["sentence_embeddings"])
        embeddings = torch.cat(chunks)[torch.argsort(torch.tensor(order, device=device))]
        return embeddings[0] if single else embeddings


def _check_texts(texts) -> list[str]:
    if texts is None:
        raise TypeError("texts is None; pass a list of non-empty strings.")
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}.")
    if len(texts) == 0:
        raise ValueError("texts is empty; pass at least one string.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str.")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty or whitespace; an empty text has no embedding.")
    return list(texts)


__all__ = [
    "INSTRUCTION_TEMPLATE",
    "NVEmbedModel",
    "NVEmbedModelOutput",
    "NVEmbedPreTrainedModel",
    "bidirectional_attention_mask",
    "build_pool_mask",
    "ensure_tokenizer_appends_eos",
    "format_instruction",
    "instruction_length",
]
