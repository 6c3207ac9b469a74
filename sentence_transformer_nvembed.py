"""The first sentence-transformers module of an NV-Embed folder (`modules.json`), loaded with `trust_remote_code`.

From sentence-transformers 5.4 on, `NVEmbedTransformer` is the library's own Transformer module. Releases 4.0 to 5.3
strip every text before tokenizing it: the query prompt ("Instruct: ...\\nQuery:\\n") then loses its final "\\n" when
sentence-transformers measures it for `include_prompt=False`, that token is pooled with the text, and query vectors
differ from `NVEmbedModel.encode`'s without any error. On those releases `NVEmbedTransformer.tokenize` tokenizes the
texts as given, as 5.4+ and `encode` do, so the prompt is measured the way the model measures it (BOS + prompt tokens;
sentence-transformers drops the EOS the tokenizer appends).

This file imports only sentence-transformers (and what it imports); the model itself is `modeling_nvembed.py`.
"""

import re

import sentence_transformers
from sentence_transformers.util import import_from_string


# The class path the library's own modules.json entries use; every release from 4.0 to 6.x resolves it.
LIBRARY_TRANSFORMER = "sentence_transformers.models.Transformer"


def _major_minor(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"Cannot read a version number from {version!r}.")
    return int(match.group(1)), int(match.group(2))


# sentence-transformers < 5.4: `Transformer.tokenize` calls `str(text).strip()` on every text.
LIBRARY_STRIPS_TEXTS = _major_minor(sentence_transformers.__version__) < (5, 4)

if LIBRARY_STRIPS_TEXTS:
    _Transformer = import_from_string(LIBRARY_TRANSFORMER)

    class NVEmbedTransformer(_Transformer):
        """The library's Transformer module whose `tokenize` keeps each text as given (no strip)."""

        def tokenize(self, texts, padding=True):
            if not all(isinstance(text, str) for text in texts):
                return super().tokenize(texts, padding)  # text pairs and {key: text} rows: the library's handling
            texts = [text.lower() for text in texts] if self.do_lower_case else list(texts)
            return dict(
                self.tokenizer(
                    texts,
                    padding=padding,
                    truncation="longest_first",
                    return_tensors="pt",
                    max_length=self.max_seq_length,
                )
            )

else:
    NVEmbedTransformer = import_from_string(LIBRARY_TRANSFORMER)


__all__ = ["LIBRARY_STRIPS_TEXTS", "NVEmbedTransformer"]
