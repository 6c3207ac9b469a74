"""Losses of the two-stage recipe, built on sentence-transformers' MultipleNegativesRankingLoss."""

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss, MultipleNegativesRankingLoss
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


def split_columns(teacher: torch.Tensor, batch: int, columns: int) -> list[torch.Tensor]:
    """The `label` column's concatenated teacher vectors (batch, columns * dim): one (batch, dim) tensor per text
    column. Refuses a column of another shape, naming it."""
    if teacher is None or teacher.dim() != 2 or teacher.shape[0] != batch or teacher.shape[1] % columns:
        shape = None if teacher is None else tuple(teacher.shape)
        raise ValueError(
            f"Teacher distillation needs a ({batch}, {columns} * teacher_dim) `label` column of cached teacher "
            f"vectors; got {shape}. Set distill_weight / vector_weight to 0 or let train.distill add the column."
        )
    return list(teacher.view(batch, columns, -1).unbind(dim=1))


def per_column(teacher: torch.Tensor, embeddings: list[torch.Tensor]) -> list[torch.Tensor]:
    """`split_columns` for a batch's `embeddings` (one tensor per column), in their dtype."""
    columns = split_columns(teacher, embeddings[0].shape[0], len(embeddings))
    return [column.to(embeddings[0].dtype) for column in columns]


def _similarities(embeddings: list[torch.Tensor], teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) cosine similarities of each anchor to every candidate of the batch, each (B, (k - 1) * B)."""
    t_queries, *t_docs = per_column(teacher, embeddings)
    s_queries = F.normalize(embeddings[0], dim=-1)
    s_docs = F.normalize(torch.cat(embeddings[1:]), dim=-1)
    return s_queries @ s_docs.T, t_queries @ torch.cat(t_docs).T


def similarity_distillation(
    embeddings: list[torch.Tensor], teacher: torch.Tensor, scale: float, teacher_scale: float
) -> torch.Tensor:
    """KL(teacher || student) of each anchor's softmax over every candidate of the batch (in-batch distillation).

    Args:
        embeddings: the student's columns (anchor, positive, negative_1, ...), each (B, d).
        teacher: (B, k * d_t): each row's L2-normalized teacher vectors of the same k columns, concatenated (the
            dataset's `label` column, cached once before training: see `train.distill`).
        scale, teacher_scale: 1 / temperature of the student's and the teacher's softmax.

    The candidates are ordered as MultipleNegativesRankingLoss orders them (all positives, then all first negatives,
    ...), so with distillation weight w the loss is MNRL + w * KL. The teacher's scores are soft, so items of the
    same label in a classification batch are not pushed apart as they would be as in-batch negatives.
    """
    student, teacher_scores = _similarities(embeddings, teacher)
    log_student = F.log_softmax(student * scale, dim=-1)
    target = F.softmax(teacher_scores * teacher_scale, dim=-1)
    return F.kl_div(log_student, target, reduction="batchmean")


def passage_distillation(
    embeddings: list[torch.Tensor], teacher: torch.Tensor, scale: float, teacher_scale: float
) -> torch.Tensor:
    """KL(teacher || student) of each passage's softmax over the batch's other passages (itself left out).

    `similarity_distillation` teaches how queries rank passages; this term teaches how texts relate to each other,
    the geometry that clustering, classification and STS read, from the same cached teacher vectors (no extra
    encoding). Arguments as `similarity_distillation`; the passages are every column after the anchor.
    """
    t = torch.cat(per_column(teacher, embeddings)[1:])
    s = F.normalize(torch.cat(embeddings[1:]), dim=-1)
    self_pairs = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    student = (s @ s.T * scale).masked_fill(self_pairs, float("-inf"))
    target = F.softmax((t @ t.T * teacher_scale).masked_fill(self_pairs, float("-inf")), dim=-1)
    log_student = F.log_softmax(student, dim=-1).masked_fill(self_pairs, 0.0)  # 0 * -inf would be nan
    return F.kl_div(log_student, target, reduction="batchmean")


def similarity_mse(embeddings: list[torch.Tensor], teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the student's and the teacher's in-batch cosine similarities (the candidates of
    `similarity_distillation`; Jasper's similarity loss, arXiv 2412.19048). An absolute target: the softmax terms
    only see differences of similarities and leave vectors crowded in one cone; this one spreads them as the teacher
    does."""
    student, target = _similarities(embeddings, teacher)
    return F.mse_loss(student, target)


class TeacherVectorLoss(EmbedDistillLoss):
    """The teacher's vector of every text, regressed from the student's through a learned linear projection
    (student dim -> teacher dim, 576 -> 384 here): sentence-transformers' `EmbedDistillLoss` (cosine distance, its
    `projection_dim`) times `weight`, reading this repository's concatenated `label` column.

    The similarity terms (`similarity_distillation`, `TeacherGeometryLoss`) pass on one number per pair of texts; this
    passes on the teacher's whole vector per text (384 numbers), everything the teacher's space encodes about it that
    a linear map can read. The projection only serves the loss: the saved model's vectors are the student's own.
    A run builds one of these per stage and hands it to every loss that uses it (one projection), and
    `train.pipeline` saves the projection with every checkpoint, since a trainer checkpoint holds the model and the
    optimizer state, not a loss's weights.

    Args:
        model: the SentenceTransformer being trained.
        teacher_dim: size of the teacher's vectors.
        weight: factor of the loss.

    Requirements:
        one or more text columns and a ``label`` column of their teacher vectors concatenated per row
        (``train.distill.add_teacher_vectors``).
    """

    def __init__(self, model, teacher_dim: int, weight: float = 1.0):
        super().__init__(model, distance_metric="cosine", projection_dim=teacher_dim)
        if weight <= 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        self.weight = weight

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, sentence_features)
        return self.term(embeddings, labels)

    def term(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """`weight` x the mean over columns of 1 - cos(projection(student), teacher)."""
        return self.weight * self.compute_loss_from_embeddings(embeddings, per_column(labels, embeddings))

    @torch.no_grad()
    def fit_projection(self, student: torch.Tensor, teacher: torch.Tensor, alpha: float = 1.0) -> float:
        """Set the projection to the ridge regression of `teacher` (n, teacher_dim) on `student` (n, student_dim)
        vectors of the same n texts, and return the fitted map's mean cosine to the teacher on them.

        A random projection starts at cosine ~0 (benchmarks/results/teacher_probe.txt: after make train's 155
        stage-1 steps `train-vec`'s learned map reached 0.36 where the best linear map of the same student reaches
        0.63), so early gradients bend the student toward a random map; this starts from the best one.
        """
        if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"fit_projection needs (n, student_dim) and (n, teacher_dim) vectors of the same texts; got "
                f"{tuple(student.shape)} and {tuple(teacher.shape)}"
            )
        if student.shape[1] != self.projection.in_features or teacher.shape[1] != self.projection.out_features:
            raise ValueError(
                f"fit_projection: vectors of size {student.shape[1]} -> {teacher.shape[1]} for a "
                f"{self.projection.in_features} -> {self.projection.out_features} projection"
            )
        weight, bias = ridge(student, teacher, alpha)
        self.projection.weight.copy_(weight.T.to(self.projection.weight))
        self.projection.bias.copy_(bias.to(self.projection.bias))
        fitted = self.projection(student.to(self.projection.weight))
        return F.cosine_similarity(fitted, teacher.to(fitted), dim=-1).mean().item()

    def get_config_dict(self) -> dict:
        return {**super().get_config_dict(), "weight": self.weight}


def ridge(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """W (in, out) and b minimising |xW + b - y|^2 + alpha |W|^2: closed form on centred data, in float64."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    gram = xc.T @ xc + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    w = torch.linalg.solve(gram, xc.T @ (y - my))
    return w, my - mx @ w


class _DistillationMixin:
    """Adds `distill_weight * similarity_distillation(...)`, `similarity_weight * similarity_mse(...)`,
    `passage_weight * passage_distillation(...)` and `vector_loss.term(...)` (a `TeacherVectorLoss`: the teacher's
    vector of every text of the batch) to a ranking loss that computes embeddings once.

    Args:
        model: the SentenceTransformer being trained.
        scale: 1 / temperature of the ranking loss and of the student's distillation softmax.
        distill_weight: weight of the KL term.
        teacher_scale: 1 / temperature of the teacher's softmax.
        similarity_weight: weight of `similarity_mse` (0: off).
        passage_weight: weight of `passage_distillation` (0: off).
        vector_loss: a `TeacherVectorLoss` applied to every column's embeddings (None: off).
        **kwargs: passed on to the ranking loss.
    """

    def __init__(
        self,
        model,
        scale: float = 20.0,
        distill_weight: float = 1.0,
        teacher_scale: float = 20.0,
        similarity_weight: float = 0.0,
        passage_weight: float = 0.0,
        vector_loss: TeacherVectorLoss | None = None,
        **kwargs,
    ):
        super().__init__(model, scale=scale, **kwargs)
        self.distill_weight = distill_weight
        self.teacher_scale = teacher_scale
        self.similarity_weight = similarity_weight
        self.passage_weight = passage_weight
        self.vector_loss = vector_loss  # a submodule: the trainer's optimizer finds its projection

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        loss = super().compute_loss_from_embeddings(embeddings, labels)
        loss = loss + self.distill_weight * similarity_distillation(embeddings, labels, self.scale, self.teacher_scale)
        if self.similarity_weight > 0:
            loss = loss + self.similarity_weight * similarity_mse(embeddings, labels)
        if self.passage_weight > 0:
            loss = loss + self.passage_weight * passage_distillation(
                embeddings, labels, self.scale, self.teacher_scale
            )
        if self.vector_loss is not None:
            loss = loss + self.vector_loss.term(embeddings, labels)
        return loss


class DistilledMultipleNegativesRankingLoss(_DistillationMixin, MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss (cosine similarity, its default) + in-batch similarity distillation from cached
    teacher vectors (`label` column); arguments as `_DistillationMixin`."""


class DistilledHardNegativesOnlyRankingLoss(_DistillationMixin, HardNegativesOnlyRankingLoss):
    """HardNegativesOnlyRankingLoss + in-batch similarity distillation (soft teacher scores over the whole batch)."""


class TeacherGeometryLoss(torch.nn.Module):
    """The teacher's similarity structure on a batch of unrelated texts: MSE between the student's and the teacher's
    cosine-similarity matrices over every pair of the batch, plus (``kl_weight``) the KL between their softmaxes of
    each text over the others.

    The ranking and in-batch distillation losses only see (query, positive) rows: how a query ranks its candidates.
    Plain ``encode()`` on general sentences (STS, clustering, deduplication) reads how any two texts relate, so this
    loss is trained on texts drawn at random from every source, with no prompt: the student's plain geometry becomes
    the teacher's. sentence-transformers' `MSELoss`/`EmbedDistillLoss` regress each vector onto the teacher's (through
    a learned projection when the sizes differ, 576 vs 384 here): they leave the student's own cosines free, which
    are what plain use reads; its `DistillKLDivLoss`/`MarginMSELoss` need (query, passage) scores. Hence this loss.

    Args:
        model: the SentenceTransformer being trained.
        weight: factor of the whole loss (the MSE of cosines is ~0.05 once trained, against a ranking loss of ~1).
        kl_weight: weight of the softmax (KL) term; 0 keeps only the MSE of similarities.
        scale: 1 / temperature of both softmaxes in the KL term.

    Requirements:
        one or more text columns, and a ``label`` column of the L2-normalized teacher vectors of those columns,
        concatenated per row (``train.distill.add_teacher_vectors``).

    Inputs:
        +-------------------------------+-----------------------------------------------+
        | Texts                         | Labels                                        |
        +===============================+===============================================+
        | (text_1, ..., text_k)         | teacher vectors of the k texts, concatenated  |
        +-------------------------------+-----------------------------------------------+

    Relations:
        `similarity_mse` is the same MSE on a (query, positive) batch's query-candidate block only; here every pair
        of the batch counts, diagonal excluded.
    """

    def __init__(self, model, weight: float = 1.0, kl_weight: float = 0.0, scale: float = 20.0):
        super().__init__()
        if weight <= 0 or kl_weight < 0 or scale <= 0:
            raise ValueError(f"weight must be > 0, kl_weight >= 0 and scale > 0, got {weight}, {kl_weight}, {scale}")
        self.model, self.weight, self.kl_weight, self.scale = model, weight, kl_weight, scale

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        batch, k = embeddings[0].shape[0], len(embeddings)
        if labels is None or labels.dim() != 2 or labels.shape[0] != batch or labels.shape[1] % k:
            shape = None if labels is None else tuple(labels.shape)
            raise ValueError(
                f"TeacherGeometryLoss needs a (batch, {k} * teacher_dim) `label` column of cached teacher vectors; "
                f"got {shape}."
            )
        student = F.normalize(torch.cat(embeddings), dim=-1)
        teacher = labels.detach().view(batch, k, -1).transpose(0, 1).reshape(k * batch, -1).to(student.dtype)
        teacher = F.normalize(teacher, dim=-1)
        if student.shape[0] < 2:
            raise ValueError("TeacherGeometryLoss needs at least two texts per batch (it compares pairs).")
        off_diagonal = ~torch.eye(student.shape[0], dtype=torch.bool, device=student.device)
        student_sim, teacher_sim = student @ student.T, teacher @ teacher.T
        loss = F.mse_loss(student_sim[off_diagonal], teacher_sim[off_diagonal])
        if self.kl_weight > 0:
            masked = (~off_diagonal) * -1e4
            log_student = F.log_softmax(student_sim * self.scale + masked, dim=-1)
            target = F.softmax(teacher_sim * self.scale + masked, dim=-1)
            loss = loss + self.kl_weight * F.kl_div(log_student, target, reduction="batchmean")
        return self.weight * loss

    def get_config_dict(self) -> dict:
        return {"weight": self.weight, "kl_weight": self.kl_weight, "scale": self.scale}
