"""The DistillCSE in-batch distillation term, shared by the SimCSE-based losses and by :class:`InBatchDistillLoss`.

:class:`InBatchDistillation` holds the term's hyperparameters and teachers, validates them, turns a batch into
teacher rows (live teachers, or a precomputed ``label`` column) and computes
``distillation_weight * L_kd`` from student embeddings through
:func:`~distillcse_st.similarity.in_batch_distillation_loss`.

Per-batch memo: ST's wrapper losses (:class:`MatryoshkaLoss`, :class:`AdaptiveLayerLoss`, ``Matryoshka2dLoss``)
call the inner loss several times on the same feature dicts, handing state between those calls through
the dicts. The losses do the same: :func:`batch_memo` is a dict kept in the anchor column's feature dict,
so that a batch's teacher similarity, duplicate ids and student inputs are computed once per batch,
whatever wraps the loss. The student never sees that entry: it gets :func:`model_inputs` copies, which
live in the memo too, so what a wrapper writes into them reaches its next call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses.adaptive_layer import TransformerDecorator
from sentence_transformers.sentence_transformer.losses.matryoshka import ForwardDecorator as MatryoshkaForward
from torch import Tensor, nn

from distillcse_st import distributed
from distillcse_st.features import token_rows
from distillcse_st.similarity import DIVERGENCES, Divergence, duplicate_groups, in_batch_distillation_loss
from distillcse_st.teachers import TeacherEnsemble

logger = logging.getLogger(__name__)

MEMO_KEY = "distillcse_batch_memo"
T = TypeVar("T")

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


def check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    return float(value)


def batch_memo(features: dict[str, Any], owner: nn.Module) -> dict[str, Any]:
    """The per-batch scratch dict of the loss ``owner``, kept in ``features`` (see the module docstring)."""
    return features.setdefault(MEMO_KEY, {}).setdefault(owner, {})


def model_inputs(features: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``features`` without the memo: what the student may be given."""
    return {key: value for key, value in features.items() if key != MEMO_KEY}


def memo_labels_match(memo_labels: Tensor | None, labels: Tensor | None) -> bool:
    """Whether ``labels`` are the labels a memo was computed from, or a truncation of them.

    ST's MatryoshkaLoss hands the inner loss ``labels[..., :dim]`` when the label width equals the
    student's dimension: a view of the same storage, which must not change the teacher similarity.
    """
    if memo_labels is None or labels is None:
        return memo_labels is labels
    return (
        labels.data_ptr() == memo_labels.data_ptr()
        and labels.shape[:-1] == memo_labels.shape[:-1]
        and labels.size(-1) <= memo_labels.size(-1)
    )


def untruncated_labels(student: nn.Module, labels: Tensor | None) -> Tensor | None:
    """``labels`` whole again where MatryoshkaLoss truncated them before the loss saw them whole.

    MatryoshkaLoss hands the inner loss ``labels[..., :dim]`` when the label width equals the student's
    dimension. The loss computes a batch's teacher similarity once, from its first call, which is not the
    widest dimension when ``matryoshka_dims`` lacks the student's own or dimensions are sampled
    (``n_dims_per_step``, Matryoshka2dLoss's default). Such a slice is a view of the whole labels, whose row
    width is its stride: the whole rows are read back from the same storage. A truncated copy cannot be
    read back and is refused.
    """
    forward = getattr(student, "forward", None)
    if not isinstance(forward, MatryoshkaForward) or labels is None or forward.dim is None or labels.ndim < 2:
        return labels
    full = student.get_embedding_dimension()
    if full is None or not forward.dim < full or labels.size(-1) != forward.dim:
        return labels
    if labels.stride(-1) != 1 or labels.stride(-2) != full:
        raise ValueError(
            f"MatryoshkaLoss truncated the teacher labels to {forward.dim} dimensions before this loss saw them "
            "whole, and they are not a view of the whole labels. Include the student's full dimension "
            f"({full}) in matryoshka_dims with n_dims_per_step=-1, or use live teachers."
        )
    return labels.as_strided((*labels.shape[:-1], full), labels.stride(), labels.storage_offset())


def refuse_adaptive_layer_around_cache(student: nn.Module, loss_name: str) -> None:
    """Refuse to run a GradCache loss inside AdaptiveLayerLoss, with the alternative (ST only warns, then fails).

    AdaptiveLayerLoss hands layer embeddings between its calls through the features of a forward pass that
    GradCache replays in mini-batches after the wrapper is gone.
    """
    if isinstance(getattr(student[0], "forward", None), TransformerDecorator):
        raise ValueError(
            f"AdaptiveLayerLoss cannot wrap {loss_name}, a GradCache loss (sentence-transformers does not support "
            "the combination): use the loss without 'Cached' inside AdaptiveLayerLoss or Matryoshka2dLoss."
        )


class InBatchDistillation(nn.Module):
    """DistillCSE's distillation term: hyperparameters, teachers, teacher rows and the KD loss.

    Validation that reads tensor values (NaN checks, label norms, empty texts) runs on the first batch a
    loss sees, where it waits for the device once, not at every step.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        teachers: Sequence[SentenceTransformer] | None,
        weights: Sequence[float] | None,
        group_p: float | None,
        group_size: int | None,
        group_temperature: float,
        student_temperature: float,
        teacher_temperature: float,
        distillation_weight: float,
        divergence: Divergence,
        gather_across_devices: bool,
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
        if teachers is None and weights is not None:
            raise ValueError(
                "weights belong to live teachers; for precomputed ones pass them to add_teacher_embeddings."
            )
        self.model = model
        self.teachers = None if teachers is None else TeacherEnsemble(model, teachers, weights)
        self.group_p = None if group_p is None else float(group_p)
        self.group_size = group_size
        self.group_temperature = check_positive("group_temperature", group_temperature)
        self.student_temperature = check_positive("student_temperature", student_temperature)
        self.teacher_temperature = check_positive("teacher_temperature", teacher_temperature)
        self.distillation_weight = check_non_negative("distillation_weight", distillation_weight)
        self.divergence = divergence
        self.gather_across_devices = bool(gather_across_devices)
        self._done_once: set[str] = set()

    @property
    def weights(self) -> list[float] | None:
        """The live teachers' weights (resolved once, by the ensemble); ``None`` for precomputed teachers."""
        return None if self.teachers is None else self.teachers.weights

    @property
    def _student(self) -> nn.Module:
        """The SentenceTransformer, also after the Trainer has put a DDP wrapper in ``self.model``."""
        return getattr(self.model, "module", self.model)

    def _gathering(self) -> bool:
        return self.gather_across_devices and distributed.is_distributed()

    def _first_time(self, key: str) -> bool:
        """True once per loss and ``key``: for one-time warnings and first-batch checks."""
        if key in self._done_once:
            return False
        self._done_once.add(key)
        return True

    def _check_until_passed(self, key: str, check: Callable[[], Any]) -> None:
        """Run a value check on every batch until it has passed once (it then costs nothing per step)."""
        if key not in self._done_once:
            check()
            self._done_once.add(key)

    def _warn_once(self, key: str, message: str) -> None:
        if self._first_time(f"warn:{key}"):
            logger.warning(message)

    def live_teacher_rows(self, features: dict[str, Any], labels: Tensor | None) -> Tensor:
        """The live teachers' stacked rows of a batch (a ``label`` column beside them is ignored, with a warning)."""
        if labels is not None:
            self._warn_once(
                "labels", f"{type(self).__name__} has live teachers, so the batch's 'label' column is ignored."
            )
        rows = self.teachers.rows(model_inputs(features))

        def check() -> None:
            if not bool(rows.isfinite().all()):
                raise ValueError("A live teacher produced NaN or inf embeddings for this batch.")

        self._check_until_passed("live", check)
        return rows

    def once_per_batch(
        self, features: dict[str, Any], labels: Tensor | None, compute: Callable[[Tensor | None], T]
    ) -> T:
        """``compute(labels)`` on the first call for this batch; later calls on it get the same result.

        ST's wrappers call the loss again on the same batch (once per Matryoshka dimension or per layer);
        they reuse the first call's result, also when MatryoshkaLoss hands them truncated labels, and
        precomputed labels it truncated before the first call are read back whole (:func:`untruncated_labels`).
        """
        memo = batch_memo(features, self)
        if "targets" not in memo or not memo_labels_match(memo["labels"], labels):
            whole = labels if self.teachers is not None else untruncated_labels(self._student, labels)
            memo["targets"] = compute(whole)
            memo["labels"] = whole
        return memo["targets"]

    def gathered(self, rows: Tensor) -> Tensor:
        """``rows`` of the whole global batch when gathering across processes, else ``rows``."""
        return distributed.all_gather(rows) if self._gathering() else rows

    def duplicate_ids(self, features: dict[str, Any]) -> Tensor | None:
        """Duplicate ids of the (global, when gathering) batch: rows with identical tokens share an id.

        ``None`` when the model's inputs are not ``(B, L)`` token rows (a StaticEmbedding student).
        """
        rows = token_rows(features)
        if rows is None:
            return None
        if self._gathering():
            rows = distributed.gather_token_rows(rows, pad_id=-1)
        return duplicate_groups(rows)

    def distillation_loss(
        self,
        anchors: Tensor,
        candidates: Tensor,
        teacher_similarity: Tensor,
        mask: Tensor | None,
        row_offset: int,
        exclude_self: bool,
        total_rows: int | None,
    ) -> Tensor:
        """``distillation_weight * L_kd`` of ``anchors`` against ``candidates`` (see the similarity module)."""
        rows, columns = anchors.size(0), candidates.size(0)
        if teacher_similarity.shape != (rows, columns):
            raise ValueError(
                f"The teacher similarity has shape {tuple(teacher_similarity.shape)} but the batch needs "
                f"({rows}, {columns}) (this process's anchors x all candidates)."
            )
        return self.distillation_weight * in_batch_distillation_loss(
            anchors,
            teacher_similarity.to(anchors.device),
            teacher_temperature=self.teacher_temperature,
            student_temperature=self.student_temperature,
            divergence=self.divergence,
            group_p=self.group_p,
            group_size=self.group_size,
            group_temperature=self.group_temperature,
            candidates=candidates,
            mask=mask,
            row_offset=row_offset,
            exclude_self=exclude_self,
            total_rows=total_rows,
        )

    def distillation_config(self) -> dict[str, Any]:
        return {
            "teachers": "precomputed (label column)" if self.teachers is None else self.teachers.names(),
            "weights": self.weights,
            "group_p": self.group_p,
            "group_size": self.group_size,
            "group_temperature": self.group_temperature,
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "distillation_weight": self.distillation_weight,
            "divergence": self.divergence,
            "gather_across_devices": self.gather_across_devices,
        }
