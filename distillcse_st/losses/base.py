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

from distillcse_st import distributed
from distillcse_st.similarity import (
    DIVERGENCES,
    Divergence,
    duplicate_groups,
    duplicate_mask,
    in_batch_distillation_loss,
    simcse_contrastive_loss,
    similarity_from_stacked,
    stack_teacher_embeddings,
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


#: Relative tolerance on the squared norms of the rows of a precomputed label batch, which must all
#: equal the sum of the teacher weights (unit blocks scaled by ``sqrt(w_k)``); loose enough for labels
#: stored in float16.
LABEL_NORM_RTOL = 1e-2


def _empty_rows(features: dict[str, Tensor], special_ids: Sequence[int]) -> Tensor | None:
    """Rows whose every attended token is a special token (``[CLS] [SEP]``: an empty or blank text)."""
    input_ids = features.get("input_ids")
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2 or not special_ids:
        return None
    content = ~torch.isin(input_ids, torch.tensor(list(special_ids), device=input_ids.device))
    attention_mask = features.get("attention_mask")
    if attention_mask is not None:
        content &= attention_mask.bool()
    return ~content.any(dim=1)


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
        gather_across_devices: bool = False,
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
            raise ValueError(
                "weights belong to live teachers; for precomputed ones pass them to add_teacher_embeddings."
            )
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
        self.gather_across_devices = bool(gather_across_devices)
        self._label_width: int | None = None  # the width of the first precomputed label batch
        self._batch_groups: Tensor | None = None  # duplicate ids of the last batch (see text_features)
        self._warned: set[str] = set()
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
        self._check_empty_texts(features)
        self._batch_groups = self.batch_duplicate_groups(features)
        return features

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

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

    @property
    def _student(self) -> nn.Module:
        """The SentenceTransformer, also after the Trainer has put a DDP wrapper in ``self.model``."""
        return getattr(self.model, "module", self.model)

    def _gathering(self) -> bool:
        return self.gather_across_devices and distributed.is_distributed()

    def batch_duplicate_groups(self, features: dict[str, Tensor]) -> Tensor | None:
        """Duplicate ids of the (global, when gathering) batch: rows with identical tokens share an id.

        ``None`` when the batch holds no duplicate, or when the model's inputs are not ``(B, L)`` token ids.
        """
        input_ids = features.get("input_ids")
        if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
            return None
        attention_mask = features.get("attention_mask")
        if isinstance(attention_mask, Tensor) and attention_mask.shape == input_ids.shape:
            input_ids = input_ids.masked_fill(attention_mask == 0, -1)  # the same text, however it is padded
        if self._gathering():
            input_ids = distributed.gather_token_rows(input_ids, pad_id=-1)
        groups = duplicate_groups(input_ids)
        # The ids are dense (0 .. number of distinct rows - 1), so a duplicate leaves the largest below B - 1.
        return groups if int(groups.max()) + 1 < groups.numel() else None

    def teacher_similarity(self, features: dict[str, Tensor], labels: Tensor | None) -> Tensor | None:
        """The teacher similarity: from the live teachers, else from precomputed labels.

        ``(B, B)``; with ``gather_across_devices`` in a multi-process run, ``(B, world_size * B)``: this
        process's anchors against the whole global batch. ``None`` when the distillation term is off
        (``distillation_weight=0``: plain SimCSE).
        """
        if self.distillation_weight == 0:
            return None
        if self.teachers is not None:
            if labels is not None:
                self._warn_once(
                    "labels", f"{type(self).__name__} has live teachers, so the batch's 'label' column is ignored."
                )
            if self._gathering():
                stacked = stack_teacher_embeddings(self.teachers.embed(features), self.teachers.weights)
                similarity = self._local_global_similarity(stacked)
            else:
                similarity = self.teachers.similarity(features)
            if not bool(similarity.isfinite().all()):
                raise ValueError("A live teacher produced NaN or inf embeddings for this batch.")
            return similarity
        labels = self.check_labels(features, labels)
        if self._gathering():
            return self._local_global_similarity(labels)
        return similarity_from_stacked(labels)

    def _local_global_similarity(self, stacked: Tensor) -> Tensor:
        return similarity_from_stacked(stacked, distributed.all_gather(stacked))

    def check_labels(self, features: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """Validate a batch of precomputed teacher embeddings (see :func:`~distillcse_st.add_teacher_embeddings`).

        Refused, with the reason: no labels; not a float ``(batch_size, width)`` tensor; NaN or inf; a width
        other than that of the first batch this loss saw (the column mixes teacher layouts, e.g. a
        teacher block is missing); rows whose squared norms differ (each row of the layout is K unit
        blocks scaled by ``sqrt(w_k)``, so all rows have the squared norm ``sum_k w_k``: raw, unnormalised
        embeddings would make the dot product of two rows something other than a cosine).
        """
        batch_size = features["input_ids"].size(0)
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
        if not bool(labels.isfinite().all()):
            raise ValueError("Precomputed teacher labels contain NaN or inf values.")
        width = labels.size(1)
        if self._label_width is None:
            self._label_width = width
        elif width != self._label_width:
            raise ValueError(
                f"Precomputed teacher labels have width {width}, but the first batch had width {self._label_width}: "
                "the label column mixes teacher layouts (a teacher block missing or added). Rebuild it with one "
                "call of distillcse_st.add_teacher_embeddings."
            )
        norms = labels.float().pow(2).sum(dim=1)
        if bool(((norms - norms.mean()).abs() > LABEL_NORM_RTOL * norms.mean().clamp_min(1e-12)).any()):
            raise ValueError(
                f"Precomputed teacher label rows have different norms (squared norms from {norms.min().item():.4g} "
                f"to {norms.max().item():.4g}); rows made by distillcse_st.add_teacher_embeddings all have the "
                "squared norm sum_k w_k. Raw (unnormalised) teacher embeddings are not a valid label column."
            )
        return labels

    def embed_views(self, features: dict[str, Tensor]) -> list[Tensor]:
        """The student's dropout views of the batch, in one merged forward pass where possible."""
        return embed_columns(self.model, [dict(features) for _ in range(self.num_views)], separate_first=False)

    def loss_from_embeddings(
        self,
        views: Sequence[Tensor],
        teacher_similarity: Tensor | None,
        duplicate_groups: Tensor | None | str = "batch",
    ) -> Tensor:
        """``contrastive_weight * L_cl(view1, view2) + distillation_weight * L_kd(view1, T)``.

        ``views`` are this process's dropout views; ``teacher_similarity`` is what
        :meth:`teacher_similarity` returned for the batch. Copies of a sentence (identical token rows)
        are masked out of each other's negatives and distillation candidates: ``duplicate_groups``
        gives their ids (:func:`~distillcse_st.similarity.duplicate_groups` of the whole, gathered,
        batch); the default, ``"batch"``, takes those the last :meth:`text_features` call found, which
        is the batch being scored when this follows :meth:`text_features` (as in :meth:`forward` and the
        cached losses).
        """
        if isinstance(duplicate_groups, str):
            duplicate_groups = self._batch_groups
        anchors = views[0]
        rows, row_offset = anchors.size(0), 0
        candidates = list(views)
        if self._gathering():
            candidates = [distributed.all_gather_with_grad(view) for view in views]
            row_offset = distributed.rank_offset(rows)
        total = candidates[0].size(0)
        if duplicate_groups is not None and duplicate_groups.numel() != total:
            duplicate_groups = None  # recorded for another batch
        mask = None if duplicate_groups is None else duplicate_mask(duplicate_groups.to(anchors.device), row_offset,
                                                                    rows)
        if len(views) > 1 and torch.is_grad_enabled() and self.training and torch.equal(views[0], views[1]):
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
            if teacher_similarity.shape != (rows, total):
                raise ValueError(
                    f"The teacher similarity has shape {tuple(teacher_similarity.shape)} but the batch needs "
                    f"({rows}, {total}) (this process's anchors x all candidates); with gather_across_devices, "
                    "compute it with DistillCSELoss.teacher_similarity."
                )
            loss = loss + self.distillation_weight * in_batch_distillation_loss(
                anchors,
                teacher_similarity.to(anchors.device),
                teacher_temperature=self.teacher_temperature,
                student_temperature=self.student_temperature,
                divergence=self.divergence,
                group_p=self.group_p,
                group_size=self.group_size,
                group_temperature=self.group_temperature,
                candidates=candidates[0] if self._gathering() else None,
                mask=mask,
                row_offset=row_offset,
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
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return DISTILLCSE_CITATION
