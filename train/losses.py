"""Losses of the two-stage recipe, built on sentence-transformers' MultipleNegativesRankingLoss."""

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.util import cos_sim


class HardNegativesOnlyRankingLoss(MultipleNegativesRankingLoss):
    """InfoNCE over each anchor's own positive and hard negatives only: no in-batch negatives.

    Stage 2 of NV-Embed (paper section 4.2) uses it for classification, clustering and STS data, where other items of
    a batch may share the anchor's label, so treating them as negatives would be wrong. sentence-transformers has no
    switch for this, hence the subclass; the model call, prompts and column handling are MNRL's.

    Args:
        model: the SentenceTransformer being trained.
        scale: 1 / temperature (100 in the paper).

    Requirements:
        (anchor, positive, negative_1, ..., negative_n) with n >= 1: without negatives the loss is constant.

    Inputs:
        +-------------------------------------------------+--------+
        | Texts                                           | Labels |
        +=================================================+========+
        | (anchor, positive, negative_1, ..., negative_n) | none   |
        +-------------------------------------------------+--------+

    Relations:
        Row i's loss does not depend on rows j != i, so the batch size does not change it (use gradient
        accumulation freely); `MultipleNegativesRankingLoss` is the in-batch version used for retrieval.
    """

    def __init__(self, model, scale: float = 100.0):
        super().__init__(model, scale=scale, similarity_fct=cos_sim)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if len(embeddings) < 3:
            raise ValueError(
                "HardNegativesOnlyRankingLoss needs (anchor, positive, negative_1, ...) columns; got "
                f"{len(embeddings)} column(s). Without hard negatives there is nothing to contrast."
            )
        anchors = F.normalize(embeddings[0], dim=-1)  # (B, d)
        candidates = F.normalize(torch.stack(embeddings[1:], dim=1), dim=-1)  # (B, 1 + n, d)
        scores = torch.einsum("bd,bkd->bk", anchors, candidates) * self.scale  # (B, 1 + n)
        target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)  # the positive is column 0
        return F.cross_entropy(scores, target)
