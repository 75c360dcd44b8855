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

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Divergence = Literal["ce", "kl", "js"]
DIVERGENCES: tuple[str, ...] = ("ce", "kl", "js")

#: The logit given to masked candidates (duplicates of the anchor). Cosines lie in [-1, 1], so after any
#: temperature its softmax probability is exactly 0 in float32, and unlike ``-inf`` it keeps every
#: ``0 * log p`` term and every gradient finite.
MASKED_LOGIT = -1.0e4


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


def similarity_from_stacked(stacked: Tensor, candidates: Tensor | None = None) -> Tensor:
    """The averaged teacher similarity of a batch from its :func:`stack_teacher_embeddings` rows.

    Against the rows of ``candidates`` (e.g. the whole batch gathered across processes) if given.
    """
    with full_precision(stacked.device):
        stacked = stacked.float()
        return stacked @ (stacked if candidates is None else candidates.float()).T


def off_diagonal(matrix: Tensor, row_offset: int = 0) -> Tensor:
    """Drop the diagonal of a ``(R, C)`` matrix: ``(R, C - 1)``, row order kept.

    The "diagonal" of row ``r`` is column ``r + row_offset``: ``R`` local rows of a batch of ``C``
    (as on one process of a multi-process run, see ``gather_across_devices``) start at ``row_offset``.
    A gather of precomputed column indices: no host-device synchronisation, whatever the shape.
    """
    rows, columns = matrix.shape[:2]
    if row_offset == 0 and rows == columns:
        return matrix.flatten()[1:].view(rows - 1, rows + 1)[:, :-1].reshape(rows, rows - 1)
    kept = torch.arange(columns - 1, device=matrix.device).expand(rows, columns - 1)
    diagonal = torch.arange(rows, device=matrix.device).unsqueeze(1) + row_offset
    return matrix.gather(1, kept + (kept >= diagonal).long())


#: Multipliers of the polynomial row hash of :func:`duplicate_groups`: powers of an odd 64-bit constant,
#: wrapped to int64 (integer overflow wraps in torch, on every device).
_HASH_BASE = 0x9E3779B97F4A7C15


def _hash_coefficients(length: int, device: torch.device) -> Tensor:
    powers = [pow(_HASH_BASE, position + 1, 2**64) for position in range(length)]
    return torch.tensor([p - 2**64 if p >= 2**63 else p for p in powers], dtype=torch.long, device=device)


def duplicate_groups(input_ids: Tensor) -> Tensor:
    """One id per row of a ``(B, L)`` token tensor; rows with identical tokens (duplicate texts) share it.

    The id is the index of the first identical row, found through a 64-bit polynomial hash of each row:
    no data-dependent shape, so nothing waits for the device (``torch.unique`` would).
    """
    hashes = (input_ids.long() * _hash_coefficients(input_ids.size(1), input_ids.device)).sum(dim=1)
    return (hashes.unsqueeze(1) == hashes.unsqueeze(0)).int().argmax(dim=1)


def duplicate_mask(groups: Tensor, row_offset: int = 0, rows: int | None = None) -> Tensor:
    """``(rows, B)`` mask of the candidates that duplicate an anchor (its own column excluded).

    ``groups`` are the :func:`duplicate_groups` of the ``B`` candidates; the anchors are the ``rows``
    candidates from ``row_offset`` on (all of them by default). All False when no anchor has a duplicate
    (built either way: asking which would wait for the device).
    """
    rows = groups.numel() - row_offset if rows is None else rows
    local = torch.arange(row_offset, row_offset + rows, device=groups.device)
    mask = groups[local].unsqueeze(1) == groups.unsqueeze(0)
    mask[torch.arange(rows, device=groups.device), local] = False
    return mask


def simcse_contrastive_loss(
    view1: Tensor,
    view2: Tensor,
    temperature: float = 0.05,
    mask: Tensor | None = None,
    row_offset: int = 0,
) -> Tensor:
    """Unsupervised SimCSE: cross-entropy of ``cos(z_i, z'_j) / temperature`` with target ``i``.

    ``view1`` holds the anchors (``R`` rows), ``view2`` the candidates (``C >= R`` rows); anchor ``r``'s
    positive is candidate ``r + row_offset``. ``mask`` (``(R, C)``, True = not a negative) removes
    candidates from a row's softmax, e.g. the copies of a duplicated sentence; the positive is never removed.
    """
    logits = cosine_similarity_matrix(view1, view2)
    target = torch.arange(logits.size(0), device=logits.device) + row_offset
    if mask is not None:
        logits = logits.masked_fill(mask, MASKED_LOGIT)
    return F.cross_entropy(logits / temperature, target)


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


def _sort_values(packed: Tensor) -> Tensor:
    """Sort each row of an int64 tensor ascending. On CPU numpy's vectorised sort is several times faster."""
    if packed.device.type == "cpu":
        return torch.from_numpy(np.sort(packed.numpy(), axis=-1))
    return packed.sort(dim=-1).values


def packed_argsort(keys: Tensor, key_bits: int) -> Tensor:
    """Ascending argsort of each row of non-negative int64 ``keys < 2**key_bits``, ties in column order.

    The column index goes into the low bits of the key, so that one sort of plain int64 values gives
    the order: that is what makes Group-P cheap (numpy sorts values much faster than torch argsorts).
    """
    length = keys.size(-1)
    index_bits = max(1, (length - 1).bit_length())
    if key_bits + index_bits > 63:
        raise ValueError(f"{key_bits}-bit keys and {length} columns do not fit in one int64.")
    columns = torch.arange(length, device=keys.device)
    return _sort_values((keys << index_bits) | columns) & ((1 << index_bits) - 1)


def sort_descending(logits: Tensor) -> tuple[Tensor, Tensor]:
    """``logits.sort(dim=-1, descending=True)`` for float32 rows, ties in column order, via :func:`packed_argsort`."""
    if logits.dtype != torch.float32:
        return logits.sort(dim=-1, descending=True, stable=True)
    bits = logits.contiguous().view(torch.int32)
    ascending = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # int32 whose order is the floats' order
    order = packed_argsort((2**31 - 1) - ascending.long(), key_bits=32)
    return logits.gather(-1, order), order


def shuffle_within_groups(
    group_ids: Tensor,
    generator: torch.Generator | None = None,
    total_rows: int | None = None,
    row_offset: int = 0,
) -> Tensor:
    """A uniformly random permutation of each row that moves no position out of its group.

    ``group_ids`` is ``(rows, length)`` and non-decreasing along each row (consecutive groups, as
    :func:`probability_groups` and :func:`fixed_size_groups` give). Returns ``(rows, length)``
    positions: ``result[i, r]`` is the position whose content goes to position ``r``. One batched
    sort of ``(group rank, random key)`` does every row and group at once (random keys of
    ``63 - 2 * ceil(log2(length))`` bits: 45 at B = 512, ties practically never happen); the keys come
    from torch's generator, so ``torch.manual_seed`` makes the draws reproducible.

    With ``total_rows``, the keys are drawn for a ``(total_rows, length)`` batch and rows
    ``row_offset:row_offset + rows`` are used: each process of a multi-process run then makes the draws
    a single process would make for the same global batch (given the same generator state).
    """
    rows, length = group_ids.shape
    index_bits = max(1, (length - 1).bit_length())
    random_bits = min(62 - 2 * index_bits, 48)
    shape = (rows if total_rows is None else total_rows, length)
    keys = torch.randint(0, 2**random_bits, shape, generator=generator, device=group_ids.device)
    if total_rows is not None:
        keys = keys[row_offset:row_offset + rows]
    # Rank of each position's group in its row (< length), so the key needs few bits whatever the ids.
    group_rank = torch.zeros_like(keys)
    group_rank[:, 1:] = (group_ids[:, 1:] != group_ids[:, :-1]).cumsum(dim=-1)
    return packed_argsort((group_rank << random_bits) | keys, key_bits=index_bits + random_bits)


def group_shuffled_pairing(
    teacher_logits: Tensor,
    group_p: float | None = None,
    group_size: int | None = None,
    group_temperature: float = 1.0,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    total_rows: int | None = None,
    row_offset: int = 0,
) -> tuple[Tensor, Tensor]:
    """Group-P shuffling of a teacher's in-batch distribution.

    Sorts each row of ``teacher_logits`` (``(rows, n)``, e.g. the off-diagonal similarities) in
    descending order, cuts the sorted positions into groups (by cumulative probability mass
    ``group_p`` or by ``group_size`` ranks) and shuffles the order inside every group.

    Returns ``(sorted_teacher_logits, student_index)``: rank ``r`` of the teacher is paired with
    the student logit at column ``student_index[i, r]``, a random member of the same group.

    ``mask`` (``(rows, n)``, True = excluded candidate, whose teacher logit must be
    :data:`MASKED_LOGIT`) puts the excluded candidates, which sort last, into a group of their own, so
    that they are only ever paired with each other. ``total_rows`` and ``row_offset``: see
    :func:`shuffle_within_groups`.
    """
    if (group_p is None) == (group_size is None):
        raise ValueError("Give exactly one of group_p and group_size.")
    sorted_logits, order = sort_descending(teacher_logits)
    if group_p is not None:
        groups = probability_groups(sorted_logits, group_p, group_temperature)
    else:
        groups = fixed_size_groups(*sorted_logits.shape, group_size, device=sorted_logits.device)
    if mask is not None:
        groups = groups.masked_fill(mask.gather(-1, order), 2**40)
    positions = shuffle_within_groups(groups, generator, total_rows=total_rows, row_offset=row_offset)
    return sorted_logits, order.gather(-1, positions)


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
        log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)  # finite even where p = q = 0
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
    candidates: Tensor | None = None,
    mask: Tensor | None = None,
    row_offset: int = 0,
    exclude_self: bool = True,
    total_rows: int | None = None,
) -> Tensor:
    """DistillCSE's KD term: match ``softmax(S_i)`` to ``softmax(T_i)`` row by row, diagonal excluded.

    ``S = cos(z_i, z_j)`` comes from ``student_embeddings`` (``(B, dim)``), ``T`` is the teacher's
    ``(B, B)`` similarity. With ``group_p`` or ``group_size`` set, the student logits are taken in
    the Group-P shuffled order of :func:`group_shuffled_pairing`; with neither, this is vanilla KD.

    ``candidates`` (``(C, dim)``, default: the anchors themselves) are what each anchor's distribution runs
    over, and ``teacher_similarity`` is then ``(R, C)``. With ``exclude_self`` (DistillCSE's setting, where the
    candidates are the batch's own sentences) candidate ``r + row_offset`` is anchor ``r`` and is dropped; without
    it (anchors against other columns, e.g. their positives) every candidate stays. ``total_rows``: the number of
    anchors of the whole batch when these ``R`` anchors are one process's slice of it (rows ``row_offset`` on), so
    that Group-P draws the keys of the whole batch and uses this slice's rows. ``mask`` (``(R, C)``, True =
    excluded) removes candidates, e.g. copies of the anchor's own sentence, from both distributions.
    """
    candidates = student_embeddings if candidates is None else candidates
    student = cosine_similarity_matrix(student_embeddings, candidates)
    teacher = teacher_similarity.float()
    if exclude_self:
        student, teacher = off_diagonal(student, row_offset), off_diagonal(teacher, row_offset)
        mask = None if mask is None else off_diagonal(mask, row_offset)
    if mask is not None:
        student = student.masked_fill(mask, MASKED_LOGIT)
        teacher = teacher.masked_fill(mask, MASKED_LOGIT)
    if group_p is not None or group_size is not None:
        teacher, student_index = group_shuffled_pairing(
            teacher, group_p, group_size, group_temperature, generator, mask=mask, total_rows=total_rows,
            row_offset=row_offset if total_rows is not None else 0,
        )
        student = student.gather(-1, student_index)
    return distillation_divergence(teacher, student, teacher_temperature, student_temperature, divergence)
