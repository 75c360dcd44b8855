"""The tensor math of DistillCSE, as plain functions (Xu et al., 2023, arXiv 2310.13499).

Nothing here knows about models or datasets: every function takes and returns tensors, so each
piece can be tested on its own. Notation follows ``docs/method.md``: for a batch of ``B`` sentences
the teacher logits ``T`` and the student logits ``S`` are ``(B, B)`` similarity matrices, and the
distillation works on their ``B - 1`` off-diagonal entries per row.

All softmaxes run in float32, also under fp16/bf16 autocast: the logits reach ``1 / 0.0125 = 80``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Divergence = Literal["ce", "kl", "js"]
DIVERGENCES: tuple[str, ...] = ("ce", "kl", "js")


@contextmanager
def full_precision(device: torch.device):
    """Disable autocast for the block, so that the math inside runs in the dtype it is given."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def cosine_similarity_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``(len(a), len(b))`` cosine similarities, computed in float32."""
    with full_precision(a.device):
        return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def weighted_similarity(embeddings: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """``sum_k w_k cos(e_k(x_i), e_k(x_j))``: the averaged in-batch similarity of K teachers."""
    return sum(weight * cosine_similarity_matrix(emb, emb) for emb, weight in zip(embeddings, weights))


def stack_teacher_embeddings(embeddings: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """Concatenate L2-normalised teacher embeddings, block k scaled by ``sqrt(w_k)``.

    For the result ``Z``, ``Z @ Z.T`` equals :func:`weighted_similarity` of the same inputs, so K
    precomputed teachers cost one matmul per batch.
    """
    return torch.cat(
        [F.normalize(emb.float(), dim=-1) * math.sqrt(weight) for emb, weight in zip(embeddings, weights)], dim=-1
    )


def similarity_from_stacked(stacked: Tensor) -> Tensor:
    """The averaged teacher similarity of a batch from its :func:`stack_teacher_embeddings` rows."""
    with full_precision(stacked.device):
        stacked = stacked.float()
        return stacked @ stacked.T


def off_diagonal(matrix: Tensor) -> Tensor:
    """Drop the diagonal of a square ``(B, B)`` matrix: ``(B, B - 1)``, row order kept."""
    size = matrix.size(0)
    return matrix.flatten()[1:].view(size - 1, size + 1)[:, :-1].reshape(size, size - 1)


def simcse_contrastive_loss(view1: Tensor, view2: Tensor, temperature: float = 0.05) -> Tensor:
    """Unsupervised SimCSE: cross-entropy of ``cos(z_i, z'_j) / temperature`` with target ``i``."""
    logits = cosine_similarity_matrix(view1, view2) / temperature
    target = torch.arange(logits.size(0), device=logits.device)
    return F.cross_entropy(logits, target)


def probability_groups(sorted_logits: Tensor, group_p: float, temperature: float = 1.0) -> Tensor:
    """Group id of every sorted position: ``floor(c_r / p)`` for the cumulative mass ``c_r``.

    ``sorted_logits`` holds each row's logits in descending order. The probabilities are
    ``softmax(sorted_logits / temperature)``; position ``r`` belongs to group ``floor(c_r / p)``
    and the last group, ``ceil(1 / p) - 1``, runs to the end of the row.
    """
    with full_precision(sorted_logits.device):
        cumulative = torch.softmax(sorted_logits.float() / temperature, dim=-1).cumsum(dim=-1)
    last_group = math.ceil(1.0 / group_p - 1e-9) - 1
    return torch.floor(cumulative.double() / group_p).clamp_(max=last_group).long()


def fixed_size_groups(rows: int, length: int, group_size: int, device: torch.device | None = None) -> Tensor:
    """Group id of every sorted position for groups of ``group_size`` consecutive ranks."""
    return (torch.arange(length, device=device) // group_size).expand(rows, length)


def shuffle_within_groups(group_ids: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random permutation of each row that moves no position out of its group.

    ``group_ids`` is ``(rows, length)`` and non-decreasing along each row (consecutive groups, as
    :func:`probability_groups` and :func:`fixed_size_groups` give). Returns ``(rows, length)``
    positions: ``result[i, r]`` is the position whose content goes to position ``r``. One batched
    sort of ``group id + uniform key`` does every row and group at once; the keys come from torch's
    generator, so ``torch.manual_seed`` makes the draws reproducible.
    """
    keys = torch.rand(group_ids.shape, generator=generator, device=group_ids.device, dtype=torch.float64)
    return (keys + group_ids).argsort(dim=-1)


def group_shuffled_pairing(
    teacher_logits: Tensor,
    group_p: float | None = None,
    group_size: int | None = None,
    group_temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Group-P shuffling of a teacher's in-batch distribution.

    Sorts each row of ``teacher_logits`` (``(rows, n)``, e.g. the off-diagonal similarities) in
    descending order, cuts the sorted positions into groups (by cumulative probability mass
    ``group_p`` or by ``group_size`` ranks) and shuffles the order inside every group.

    Returns ``(sorted_teacher_logits, student_index)``: rank ``r`` of the teacher is paired with
    the student logit at column ``student_index[i, r]``, a random member of the same group.
    """
    if (group_p is None) == (group_size is None):
        raise ValueError("Give exactly one of group_p and group_size.")
    sorted_logits, order = teacher_logits.sort(dim=-1, descending=True)
    if group_p is not None:
        groups = probability_groups(sorted_logits, group_p, group_temperature)
    else:
        groups = fixed_size_groups(*sorted_logits.shape, group_size, device=sorted_logits.device)
    return sorted_logits, order.gather(-1, shuffle_within_groups(groups, generator))


def distillation_divergence(
    teacher_logits: Tensor,
    student_logits: Tensor,
    teacher_temperature: float = 0.0125,
    student_temperature: float = 0.025,
    divergence: Divergence = "ce",
) -> Tensor:
    """Row-wise divergence between the teacher's and the student's in-batch distributions, averaged.

    Both inputs are ``(rows, n)`` logits whose columns are paired (same candidate, or the Group-P
    pairing). ``"ce"`` is ``-sum_j q_j log p_j`` with ``q = softmax(T / teacher_temperature)`` and
    ``p = softmax(S / student_temperature)``; ``"kl"`` is ``KL(q || p)`` (``"ce"`` minus the
    teacher's entropy, which carries no gradient); ``"js"`` is the Jensen-Shannon divergence
    ``(KL(q || m) + KL(p || m)) / 2`` with ``m = (p + q) / 2``.
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}.")
    with full_precision(student_logits.device):
        log_q = torch.log_softmax(teacher_logits.float() / teacher_temperature, dim=-1)
        log_p = torch.log_softmax(student_logits.float() / student_temperature, dim=-1)
        q = log_q.exp()
        if divergence == "ce":
            return -(q * log_p).sum(dim=-1).mean()
        if divergence == "kl":
            return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
        p = log_p.exp()
        log_m = torch.log((p + q) / 2)
        return (F.kl_div(log_m, log_q, reduction="batchmean", log_target=True)
                + F.kl_div(log_m, log_p, reduction="batchmean", log_target=True)) / 2


def in_batch_distillation_loss(
    student_embeddings: Tensor,
    teacher_similarity: Tensor,
    teacher_temperature: float = 0.0125,
    student_temperature: float = 0.025,
    divergence: Divergence = "ce",
    group_p: float | None = None,
    group_size: int | None = None,
    group_temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DistillCSE's KD term: match ``softmax(S_i)`` to ``softmax(T_i)`` row by row, diagonal excluded.

    ``S = cos(z_i, z_j)`` comes from ``student_embeddings`` (``(B, dim)``), ``T`` is the teacher's
    ``(B, B)`` similarity. With ``group_p`` or ``group_size`` set, the student logits are taken in
    the Group-P shuffled order of :func:`group_shuffled_pairing`; with neither, this is vanilla KD.
    """
    student = off_diagonal(cosine_similarity_matrix(student_embeddings, student_embeddings))
    teacher = off_diagonal(teacher_similarity.float())
    if group_p is not None or group_size is not None:
        teacher, student_index = group_shuffled_pairing(teacher, group_p, group_size, group_temperature, generator)
        student = student.gather(-1, student_index)
    return distillation_divergence(teacher, student, teacher_temperature, student_temperature, divergence)
