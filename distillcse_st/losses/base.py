"""The SimCSE-based DistillCSE losses: unsupervised SimCSE plus the in-batch distillation term."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

from distillcse_st import distributed
from distillcse_st.features import batch_size, token_rows
from distillcse_st.losses.distillation import (
    DISTILLCSE_CITATION,
    InBatchDistillation,
    batch_memo,
    check_non_negative,
    check_positive,
    model_inputs,
)
from distillcse_st.similarity import Divergence, duplicate_mask, simcse_contrastive_loss, similarity_from_stacked
from distillcse_st.teachers import check_stacked_labels

logger = logging.getLogger(__name__)


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(module, nn.Dropout) and module.p > 0 for module in model.modules())


def _empty_rows(features: dict[str, Tensor], special_ids: Sequence[int]) -> Tensor | None:
    """Rows whose every attended token is a special token (``[CLS] [SEP]``: an empty or blank text)."""
    rows = token_rows(features)
    if rows is None or not special_ids:
        return None
    content = (rows >= 0) & ~torch.isin(rows, torch.tensor(list(special_ids), device=rows.device))
    return ~content.any(dim=1)


class BatchTargets(NamedTuple):
    """What the loss of a batch needs besides the student's views: computed once per batch, passed explicitly."""

    teacher_similarity: Tensor | None
    """``(B, B)`` (``(B, world_size * B)`` when gathering); ``None`` without distillation."""
    duplicate_ids: Tensor | None
    """Duplicate ids of the (gathered) batch; ``None`` when the student has no token rows."""


class DistillCSELoss(InBatchDistillation):
    """SimCSE contrastive loss plus in-batch distillation from (averaged) teachers, with optional Group-P.

    The common implementation of :class:`~distillcse_st.losses.GroupPDistillLoss` and
    :class:`~distillcse_st.losses.MultiTeacherAvgLoss`, which only differ in how teachers are
    given. See those classes for the documentation of the arguments.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        teachers: Sequence[SentenceTransformer] | None = None,
        weights: Sequence[float] | None = None,
        group_p: float | None = 0.1,
        group_size: int | None = None,
        group_temperature: float = 1.0,
        contrastive_temperature: float = 0.05,
        student_temperature: float = 0.025,
        teacher_temperature: float = 0.0125,
        contrastive_weight: float = 1.0,
        distillation_weight: float = 1.0,
        divergence: Divergence = "ce",
        gather_across_devices: bool = False,
    ) -> None:
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
        self.contrastive_temperature = check_positive("contrastive_temperature", contrastive_temperature)
        self.contrastive_weight = check_non_negative("contrastive_weight", contrastive_weight)
        if self.contrastive_weight == 0 and self.distillation_weight == 0:
            raise ValueError("contrastive_weight and distillation_weight are both 0: there is nothing to train.")
        self._label_width: int | None = None  # the width of the first precomputed label batch
        if self.contrastive_weight > 0 and not _has_dropout(model):
            logger.warning(
                "The student has no dropout with p > 0, so the two SimCSE views of a sentence are identical and "
                "the contrastive term only pushes sentences apart. Enable dropout, or set contrastive_weight=0."
            )

    @property
    def num_views(self) -> int:
        """Student forward passes per batch: two dropout views for SimCSE, one for distillation alone."""
        return 2 if self.contrastive_weight > 0 else 1

    def text_features(self, sentence_features: Iterable[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The one text column of the batch, with a clear error for any other layout."""
        sentence_features = list(sentence_features)
        if len(sentence_features) != 1:
            raise ValueError(
                f"{type(self).__name__} expects a dataset with exactly one text column (plus an optional 'label' "
                f"column of precomputed teacher embeddings), but the batch has {len(sentence_features)} text columns."
            )
        features = sentence_features[0]
        if self._first_time("check:empty"):
            self._check_empty_texts(features)
        return features

    def _check_empty_texts(self, features: dict[str, Tensor]) -> None:
        tokenizer = getattr(self._student, "tokenizer", None)
        empty = _empty_rows(features, getattr(tokenizer, "all_special_ids", None) or [])
        if empty is not None and bool(empty.any()):
            self._warn_once(
                "empty",
                f"{int(empty.sum())} text(s) of a batch are empty or blank (only special tokens after tokenization). "
                "They are trained on like any sentence, and copies of one another are masked as duplicates; "
                "filter them out of the dataset if they are not meant to be there. (Warned once.)",
            )

    def batch_targets(self, features: dict[str, Tensor], labels: Tensor | None) -> BatchTargets:
        """The batch's teacher similarity and duplicate ids, computed once per batch (see ``once_per_batch``)."""
        return self.once_per_batch(
            features,
            labels,
            lambda whole: BatchTargets(self.teacher_similarity(features, whole), self.duplicate_ids(features)),
        )

    def teacher_similarity(self, features: dict[str, Tensor], labels: Tensor | None) -> Tensor | None:
        """The teacher similarity: teacher rows (live, or precomputed labels), gathered, then one matmul.

        ``(B, B)``; with ``gather_across_devices`` in a multi-process run, ``(B, world_size * B)``: this
        process's anchors against the whole global batch. ``None`` when the distillation term is off
        (``distillation_weight=0``: plain SimCSE).
        """
        if self.distillation_weight == 0:
            return None
        if self.teachers is not None:
            rows = self.live_teacher_rows(features, labels)
        else:
            rows = self.check_labels(features, labels)
        return similarity_from_stacked(rows, self.gathered(rows))

    def check_labels(self, features: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """Validate a batch of precomputed teacher rows (:func:`~distillcse_st.teachers.check_stacked_labels`).

        Also refused: a width other than that of the first batch this loss saw (the column mixes teacher
        layouts, e.g. a teacher block is missing). Value checks run on the first batch only.
        """
        rows = batch_size(features)
        if labels is None or labels.ndim != 2 or labels.size(0) != rows or not labels.is_floating_point():
            check_stacked_labels(labels, rows, type(self).__name__)  # raises, naming the problem
        self._check_until_passed("labels", lambda: check_stacked_labels(labels, rows, type(self).__name__))
        width = labels.size(1)
        if self._label_width is None:
            self._label_width = width
        elif width != self._label_width:
            raise ValueError(
                f"Precomputed teacher labels have width {width}, but the first batch had width {self._label_width}: "
                "the label column mixes teacher layouts (a teacher block missing or added). Rebuild it with one "
                "call of distillcse_st.add_teacher_embeddings."
            )
        return labels

    def embed_views(self, features: dict[str, Tensor]) -> list[Tensor]:
        """The student's dropout views of the batch, in one merged forward pass where possible.

        The views' feature dicts are kept in the batch memo, so that a wrapper handing state between its
        calls through them (AdaptiveLayerLoss) finds it on its next call.
        """
        memo = batch_memo(features, self)
        if len(memo.get("views", ())) != self.num_views:
            memo["views"] = [model_inputs(features) for _ in range(self.num_views)]
        return embed_columns(self.model, memo["views"], separate_first=False)

    def loss_from_embeddings(self, views: Sequence[Tensor], targets: BatchTargets) -> Tensor:
        """``contrastive_weight * L_cl(view1, view2) + distillation_weight * L_kd(view1, T)``.

        ``views`` are this process's dropout views; ``targets`` what :meth:`batch_targets` returned for the
        batch. Copies of a sentence (identical token rows) are masked out of each other's negatives and
        distillation candidates. A batch of one sentence (a last, short batch) has no negative and no
        candidate: it contributes a zero loss (with a one-time warning) that still reaches every parameter.
        """
        anchors = views[0]
        rows, row_offset = anchors.size(0), 0
        candidates = list(views)
        if self._gathering():
            candidates = [distributed.all_gather_with_grad(view) for view in views]
            row_offset = distributed.rank_offset(rows)
        elif rows < 2:
            self._warn_once(
                "single",
                f"{type(self).__name__} got a batch of {rows} sentence: with no in-batch negative or distillation "
                "candidate it contributes a zero loss. (A last, short batch; set dataloader_drop_last=True to "
                "skip it. Warned once.)",
            )
            return sum(view.sum() for view in views) * 0.0
        total = candidates[0].size(0)
        groups = targets.duplicate_ids
        mask = None if groups is None else duplicate_mask(groups.to(anchors.device), row_offset, rows)
        if (
            len(views) > 1 and torch.is_grad_enabled() and self.training and self._first_time("check:views")
            and torch.equal(views[0], views[1])
        ):
            self._warn_once(
                "views",
                "The two SimCSE views of the batch are identical (the student has no active dropout, or is in eval "
                "mode), so the contrastive term only pushes sentences apart. (Warned once.)",
            )
        loss = anchors.new_zeros((), dtype=torch.float32)
        if self.contrastive_weight > 0:
            loss = loss + self.contrastive_weight * simcse_contrastive_loss(
                anchors, candidates[1], self.contrastive_temperature, mask=mask, row_offset=row_offset
            )
        if self.distillation_weight > 0:
            loss = loss + self.distillation_loss(
                anchors,
                candidates[0],
                targets.teacher_similarity,
                mask,
                row_offset,
                exclude_self=True,
                total_rows=total if self._gathering() else None,
            )
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = self.text_features(sentence_features)
        targets = self.batch_targets(features, labels)
        return self.loss_from_embeddings(self.embed_views(features), targets)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **self.distillation_config(),
            "contrastive_temperature": self.contrastive_temperature,
            "contrastive_weight": self.contrastive_weight,
        }

    @property
    def citation(self) -> str:
        return DISTILLCSE_CITATION
