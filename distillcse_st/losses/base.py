"""The machinery shared by the DistillCSE losses: validation, teachers, and the loss from embeddings."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

from distillcse_st.similarity import (
    DIVERGENCES,
    Divergence,
    in_batch_distillation_loss,
    simcse_contrastive_loss,
    similarity_from_stacked,
)
from distillcse_st.teachers import TeacherEnsemble

logger = logging.getLogger(__name__)

DISTILLCSE_CITATION = """
@inproceedings{xu2023distillcse,
    title = "{D}istill{CSE}: Distilled Contrastive Learning for Sentence Embeddings",
    author = "Xu, Jiahao and Shao, Wei and Chen, Lihui and Liu, Lemao",
    booktitle = "Findings of the Association for Computational Linguistics: EMNLP 2023",
    year = "2023",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/2310.13499",
}
"""


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def _check_non_negative(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    return float(value)


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(module, nn.Dropout) and module.p > 0 for module in model.modules())


class DistillCSELoss(nn.Module):
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
    ) -> None:
        super().__init__()
        if group_p is not None and group_size is not None:
            raise ValueError("Give group_p or group_size, not both (group_size replaces group_p).")
        if group_p is not None and not (isinstance(group_p, (int, float)) and 0 < group_p <= 1):
            raise ValueError(f"group_p must lie in (0, 1], or be None for no shuffling; got {group_p!r}.")
        if group_size is not None and not (isinstance(group_size, int) and group_size >= 1):
            raise ValueError(f"group_size must be a positive integer, got {group_size!r}.")
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}.")
        self.model = model
        self.teachers = None if teachers is None else TeacherEnsemble(model, teachers, weights)
        self.weights = None if self.teachers is None else self.teachers.weights
        if teachers is None and weights is not None:
            raise ValueError("weights belong to live teachers; for precomputed ones pass them to add_teacher_embeddings.")
        self.group_p = None if group_p is None else float(group_p)
        self.group_size = group_size
        self.group_temperature = _check_positive("group_temperature", group_temperature)
        self.contrastive_temperature = _check_positive("contrastive_temperature", contrastive_temperature)
        self.student_temperature = _check_positive("student_temperature", student_temperature)
        self.teacher_temperature = _check_positive("teacher_temperature", teacher_temperature)
        self.contrastive_weight = _check_non_negative("contrastive_weight", contrastive_weight)
        self.distillation_weight = _check_non_negative("distillation_weight", distillation_weight)
        if self.contrastive_weight == 0 and self.distillation_weight == 0:
            raise ValueError("contrastive_weight and distillation_weight are both 0: there is nothing to train.")
        self.divergence = divergence
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
        batch_size = features["input_ids"].size(0)
        if batch_size < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 sentences per batch (in-batch negatives and distillation "
                f"candidates), got {batch_size}. Use a larger batch size or drop_last."
            )
        return features

    def teacher_similarity(self, features: dict[str, Tensor], labels: Tensor | None) -> Tensor | None:
        """The ``(B, B)`` teacher similarity: from the live teachers, else from precomputed labels.

        ``None`` when the distillation term is off (``distillation_weight=0``: plain SimCSE).
        """
        if self.distillation_weight == 0:
            return None
        batch_size = features["input_ids"].size(0)
        if self.teachers is not None:
            return self.teachers.similarity(features)
        if labels is None:
            raise ValueError(
                f"{type(self).__name__} was built without live teachers, so the batch needs a 'label' column of "
                "precomputed teacher embeddings: see distillcse_st.add_teacher_embeddings."
            )
        if labels.ndim != 2 or labels.size(0) != batch_size or not labels.is_floating_point():
            raise ValueError(
                f"Precomputed teacher labels must be a float tensor of shape (batch_size={batch_size}, dim), got "
                f"{tuple(labels.shape)} of {labels.dtype}: build the column with distillcse_st.add_teacher_embeddings."
            )
        if not labels.isfinite().all():
            raise ValueError("Precomputed teacher labels contain NaN or inf values.")
        return similarity_from_stacked(labels)

    def embed_views(self, features: dict[str, Tensor]) -> list[Tensor]:
        """The student's dropout views of the batch, in one merged forward pass where possible."""
        return embed_columns(self.model, [dict(features) for _ in range(self.num_views)], separate_first=False)

    def loss_from_embeddings(self, views: Sequence[Tensor], teacher_similarity: Tensor | None) -> Tensor:
        """``contrastive_weight * L_cl(view1, view2) + distillation_weight * L_kd(view1, T)``."""
        loss = views[0].new_zeros((), dtype=torch.float32)
        if self.contrastive_weight > 0:
            loss = loss + self.contrastive_weight * simcse_contrastive_loss(
                views[0], views[1], self.contrastive_temperature
            )
        if self.distillation_weight > 0:
            loss = loss + self.distillation_weight * in_batch_distillation_loss(
                views[0],
                teacher_similarity.to(views[0].device),
                teacher_temperature=self.teacher_temperature,
                student_temperature=self.student_temperature,
                divergence=self.divergence,
                group_p=self.group_p,
                group_size=self.group_size,
                group_temperature=self.group_temperature,
            )
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = self.text_features(sentence_features)
        teacher_similarity = self.teacher_similarity(features, labels)
        return self.loss_from_embeddings(self.embed_views(features), teacher_similarity)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "teachers": "precomputed (label column)" if self.teachers is None else self.teachers.names(),
            "weights": self.weights,
            "group_p": self.group_p,
            "group_size": self.group_size,
            "group_temperature": self.group_temperature,
            "contrastive_temperature": self.contrastive_temperature,
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "contrastive_weight": self.contrastive_weight,
            "distillation_weight": self.distillation_weight,
            "divergence": self.divergence,
        }

    @property
    def citation(self) -> str:
        return DISTILLCSE_CITATION
