from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.gradcache import uses_gradient_cache
from torch import Tensor, nn

from distillcse_st import distributed
from distillcse_st.features import batch_size
from distillcse_st.losses.distillation import (
    DISTILLCSE_CITATION,
    InBatchDistillation,
    batch_memo,
    model_inputs,
    refuse_adaptive_layer_around_cache,
)
from distillcse_st.similarity import Divergence, duplicate_mask, similarity_from_stacked

#: The teacher similarity and anchor features of the batch whose cached base loss is running (GradCache calls
#: ``calculate_loss`` from inside the base's ``forward``, which has no argument to carry them).
_CACHED_BATCH: ContextVar[tuple[Tensor, dict[str, Tensor]] | None] = ContextVar("distillcse_batch", default=None)


@contextmanager
def _recorded_embeddings(model: nn.Module) -> Iterator[list[Tensor]]:
    """Record the ``sentence_embedding`` of every forward pass of ``model`` during the block, in call order."""
    recorded: list[Tensor] = []
    original = model.forward

    def recording_forward(features: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        output = original(features, *args, **kwargs)
        recorded.append(output["sentence_embedding"])
        return output

    model.forward = recording_forward
    try:
        yield recorded
    finally:
        model.forward = original


def _innermost_cached_loss(loss: nn.Module) -> nn.Module:
    """The GradCache loss itself, under ST wrappers that hold it as ``.loss`` (MatryoshkaLoss)."""
    while not hasattr(loss, "calculate_loss") and isinstance(getattr(loss, "loss", None), nn.Module):
        loss = loss.loss
    if not hasattr(loss, "calculate_loss"):
        raise ValueError(f"{type(loss).__name__} reports gradient caching but has no calculate_loss to extend.")
    return loss


class InBatchDistillLoss(InBatchDistillation):
    def __init__(
        self,
        model: SentenceTransformer,
        loss: nn.Module,
        teachers: Sequence[SentenceTransformer] | None = None,
        weights: Sequence[float] | None = None,
        group_p: float | None = 0.1,
        group_size: int | None = None,
        group_temperature: float = 1.0,
        student_temperature: float = 0.025,
        teacher_temperature: float = 0.0125,
        distillation_weight: float = 1.0,
        divergence: Divergence = "ce",
        gather_across_devices: bool = False,
    ) -> None:
        """
        The DistillCSE term on top of any sentence-transformers loss: the base loss plus the distillation of a
        frozen teacher's in-batch similarity distribution, with Group-P shuffling, from one or K teachers.

        ``loss(features, labels) + distillation_weight * L_kd``. ``L_kd`` is computed from the student
        embeddings of the base loss's own forward pass (no extra student pass): each anchor (first column)
        gets a distribution over the candidates, the other columns' texts of the whole batch (positives, then
        negatives) or, with one text column, the other anchors (its own row excluded, as in DistillCSE).
        The student's ``softmax(cos / student_temperature)`` over those candidates is matched to the teacher's
        ``softmax(cos / teacher_temperature)``; with Group-P the teacher's row is sorted, cut into groups of
        probability mass ``group_p`` and shuffled inside each group every step, so only its coarse ranking is
        transferred. This is the listwise, in-batch counterpart of ST's pointwise distillation losses.

        Args:
            model: The student SentenceTransformer.
            loss: The base loss, built on the same ``model``: e.g.
                :class:`~sentence_transformers.sentence_transformer.losses.MultipleNegativesRankingLoss`,
                :class:`~sentence_transformers.sentence_transformer.losses.CachedMultipleNegativesRankingLoss`
                (GradCache is kept: the term joins the cached loss computation),
                :class:`~sentence_transformers.sentence_transformer.losses.EmbedDistillLoss` or
                :class:`~sentence_transformers.sentence_transformer.losses.MSELoss`.
            teachers: Frozen teachers run on every column of every batch (their cosine similarities averaged
                with ``weights``). ``None``: the batch's ``label`` column is the teacher (see Inputs). A teacher
                may have its own tokenizer, maximum length and embedding size.
            weights: One non-negative weight per live teacher; ``None`` gives ``1 / K``. The averaged similarity
                is divided by the sum of the weights.
            group_p: Probability mass of a Group-P group, in (0, 1]; ``None``: vanilla distillation.
            group_size: Instead of ``group_p``: groups of this many consecutive teacher ranks.
            group_temperature: Temperature of the softmax that sizes the Group-P groups (1.0).
            student_temperature: Temperature of the student's distribution (0.025).
            teacher_temperature: Temperature of the teacher's distribution (0.0125).
            distillation_weight: Weight ``lambda`` of the distillation term (1.0); 0 gives the base loss.
            divergence: ``"ce"`` (the paper's), ``"kl"`` or ``"js"``.
            gather_across_devices: In a multi-process run, every anchor gets the candidates of the whole global
                batch (embeddings gathered with gradients). Needs equal batch sizes on all processes.

        References:
            - DistillCSE: Distilled Contrastive Learning for Sentence Embeddings, Findings of EMNLP 2023:
              https://arxiv.org/abs/2310.13499

        Requirements:
            1. A base loss that embeds each text column once per step with the student (every ST
               bi-encoder loss does), at least 2 texts per batch.
            2. A teacher: live, or in the ``label`` column.

        Inputs:
            +--------------------------------------------------+------------------------------------------------+
            | Texts                                            | Labels                                         |
            +==================================================+================================================+
            | whatever the base loss takes (single sentences,  | none with live ``teachers``; else one teacher  |
            | (anchor, positive) pairs, (anchor, positive,     | embedding per row ``(d,)``, shared by all      |
            | negative) triplets)                              | columns (what EmbedDistillLoss / MSELoss use), |
            |                                                  | or one per column ``(num_columns, d)``         |
            +--------------------------------------------------+------------------------------------------------+

            Label rows are compared by cosine, so raw teacher embeddings and
            :func:`~distillcse_st.add_teacher_embeddings` rows (K teachers, several columns with ``column=[...]``,
            the student's prompts with ``prompts=``) both work; the same column serves the base loss.

        Recommendations:
            - Tune ``group_p`` on a dev set (0.1 to 0.5 worked in our benchmarks) and keep batches of 64 or more:
              the distribution runs over the in-batch candidates.
            - Use ``BatchSamplers.NO_DUPLICATES`` with pair data, as for the base loss.
            - Over a regression base (EmbedDistillLoss, MSELoss) choose ``distillation_weight`` on a dev set:
              at 1 the term's gradient was about 20x EmbedDistillLoss's at the start of our compression
              benchmark. There, with a teacher whose embeddings the student can match directly, the term
              lowered quality at 1 and at 0.05 (benchmarks/README.md): for such compression the base loss alone
              is the better choice.

        Relations:
            - :class:`~distillcse_st.losses.GroupPDistillLoss` is this term on top of unsupervised SimCSE, with
              duplicates masked and the views drawn by the loss itself.
            - :class:`~sentence_transformers.sentence_transformer.losses.DistillKLDivLoss` distils given
              (query, passage) scores; this term distils the whole in-batch distribution, computed by the teacher.
            - Works inside :class:`~sentence_transformers.sentence_transformer.losses.MatryoshkaLoss`,
              :class:`~sentence_transformers.sentence_transformer.losses.AdaptiveLayerLoss` and
              :class:`~sentence_transformers.sentence_transformer.losses.Matryoshka2dLoss`, and around them.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
                from distillcse_st.losses import InBatchDistillLoss

                student = SentenceTransformer("path/to/student")
                teacher = SentenceTransformer("path/to/teacher")
                train_dataset = Dataset.from_dict({
                    "anchor": ["It's nice weather outside today.", "He drove to work."],
                    "positive": ["It's so sunny.", "He took the car to the office."],
                })
                base = losses.CachedMultipleNegativesRankingLoss(student, mini_batch_size=32)
                loss = InBatchDistillLoss(student, base, teachers=[teacher], group_p=0.1)

                trainer = SentenceTransformerTrainer(model=student, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__(
            model,
            teachers=teachers,
            weights=weights,
            group_p=group_p,
            group_size=group_size,
            group_temperature=group_temperature,
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
            distillation_weight=distillation_weight,
            divergence=divergence,
            gather_across_devices=gather_across_devices,
        )
        if not isinstance(loss, nn.Module) or isinstance(loss, InBatchDistillation):
            raise ValueError(
                "loss must be a sentence-transformers loss module without a DistillCSE term, got "
                f"{type(loss).__name__}."
            )
        self.loss = loss
        self.uses_gradient_cache = uses_gradient_cache(loss)
        if self.uses_gradient_cache:
            cached = _innermost_cached_loss(loss)
            self._base_calculate_loss: Callable[..., Tensor] = cached.calculate_loss
            # Late-bound, so that a wrapper decorating this loss's calculate_loss (MatryoshkaLoss) is honoured.
            cached.calculate_loss = lambda *args, **kwargs: self.calculate_loss(*args, **kwargs)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        memo = batch_memo(sentence_features[0], self)
        # Persistent copies without the memo: what a wrapper writes into them reaches its next call.
        inputs = memo.setdefault("inputs", [model_inputs(features) for features in sentence_features])
        teacher_similarity = self.batch_teacher_similarity(sentence_features, labels)
        if self.uses_gradient_cache:
            refuse_adaptive_layer_around_cache(self._student, type(self.loss).__name__)
            token = _CACHED_BATCH.set((teacher_similarity, sentence_features[0]))
            try:
                return self.loss(inputs, labels)
            finally:
                _CACHED_BATCH.reset(token)
        with _recorded_embeddings(self._student) as recorded:
            base = self.loss(inputs, labels)
        rows = batch_size(inputs[0])
        embeddings = torch.cat(recorded) if recorded else None
        if embeddings is None or embeddings.size(0) < rows * len(inputs):
            raise ValueError(
                f"{type(self.loss).__name__} embedded {0 if embeddings is None else embeddings.size(0)} texts for "
                f"{len(inputs)} column(s) of {rows}: InBatchDistillLoss needs a base loss that embeds every column "
                "with the student (ST's bi-encoder losses do)."
            )
        columns = list(embeddings[: rows * len(inputs)].split(rows))
        return base + self.term(columns, teacher_similarity, sentence_features[0])

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The cached base loss plus the term, from GradCache's per-column, per-mini-batch embeddings."""
        loss = self._base_calculate_loss(reps, labels, with_backward=with_backward)
        batch = _CACHED_BATCH.get()
        if batch is None:  # the base loss called on its own, outside this loss
            return loss
        term = self.term([torch.cat(column) for column in reps], *batch)
        if with_backward and term.requires_grad:
            term.backward()
            term = term.detach()
        return loss + term

    def batch_teacher_similarity(self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """The anchors x candidates teacher similarity of the batch, computed once per batch."""

        def compute(whole: Tensor | None) -> Tensor:
            rows = [F.normalize(column.float(), dim=-1) for column in self.teacher_rows(sentence_features, whole)]
            candidates = [self.gathered(column) for column in (rows[1:] or rows)]
            return similarity_from_stacked(rows[0], torch.cat(candidates))

        return self.once_per_batch(sentence_features[0], labels, compute)

    def teacher_rows(self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None) -> list[Tensor]:
        """One ``(B, width)`` tensor of teacher rows per column: live teachers, or the ``label`` column."""
        if self.teachers is not None:
            return [self.live_teacher_rows(features, labels) for features in sentence_features]
        count, rows = len(sentence_features), batch_size(sentence_features[0])
        if labels is None:
            raise ValueError(
                "InBatchDistillLoss was built without live teachers, so the batch needs a 'label' column of teacher "
                "embeddings: (batch_size, dim), or (batch_size, num_columns, dim) with one row per text column."
            )
        if labels.ndim not in (2, 3) or labels.size(0) != rows or (labels.ndim == 3 and labels.size(1) != count):
            raise ValueError(
                f"Teacher labels must have shape (batch_size={rows}, dim) or (batch_size={rows}, num_columns={count}, "
                f"dim), got {tuple(labels.shape)}."
            )

        def check() -> None:
            if not bool(labels.isfinite().all()):
                raise ValueError("Teacher labels contain NaN or inf values.")

        self._check_until_passed("labels", check)
        return [labels] * count if labels.ndim == 2 else list(labels.unbind(1))

    def term(
        self, columns: Sequence[Tensor], teacher_similarity: Tensor, anchor_features: dict[str, Tensor]
    ) -> Tensor:
        """``distillation_weight * L_kd`` from the student embeddings of each column.

        ``anchor_features``: the anchor column's features; with one text column, copies of a text are masked
        out of each other's candidates.
        """
        anchors = columns[0]
        if self.distillation_weight == 0:
            return anchors.new_zeros((), dtype=torch.float32)
        rows, row_offset, total_rows = anchors.size(0), 0, None
        single = len(columns) == 1
        if self._gathering():
            columns = [distributed.all_gather_with_grad(column) for column in columns]
            row_offset, total_rows = distributed.rank_offset(rows), columns[0].size(0)
        elif single and rows < 2:
            self._warn_once(
                "single",
                f"{type(self).__name__} got a batch of {rows} text: with no in-batch candidate its distillation "
                "term is zero. (A last, short batch; set dataloader_drop_last=True to skip it. Warned once.)",
            )
            return anchors.sum() * 0.0
        candidates = columns[0] if single else torch.cat(columns[1:])
        groups = self.duplicate_ids(anchor_features) if single else None
        mask = None if groups is None else duplicate_mask(groups.to(anchors.device), row_offset, rows)
        return self.distillation_loss(
            anchors, candidates, teacher_similarity, mask, row_offset, exclude_self=single, total_rows=total_rows
        )

    def get_config_dict(self) -> dict[str, Any]:
        base_config = getattr(self.loss, "get_config_dict", None)
        return {
            "loss": type(self.loss).__name__,
            "loss_config": base_config() if callable(base_config) else {},
            **self.distillation_config(),
        }

    @property
    def citation(self) -> str:
        return (getattr(self.loss, "citation", None) or "") + DISTILLCSE_CITATION
