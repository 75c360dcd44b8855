"""The authors' Group-P permutation design, re-implemented for side-by-side timing only.

It follows the reference implementation's structure (DistillCSE, Xu et al. 2023): sort each teacher
row, softmax of the sorted raw cosines, count per row how many sorted positions fall below each
cumulative-mass threshold ``(g + 1) * p``, then build every row's permutation in Python, one
``torch.randperm`` per row and group, concatenated per row and stacked. Not part of the package.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def reference_group_p_pairing(teacher_logits: Tensor, group_p: float) -> tuple[Tensor, Tensor]:
    """``(sorted teacher logits, student index)`` like ``distillcse_st.similarity.group_shuffled_pairing``."""
    rows, length = teacher_logits.shape
    sorted_logits, order = torch.sort(teacher_logits, dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    n_groups = math.ceil(1 / group_p - 1e-9)
    ends = torch.stack([(cumulative < (g + 1) * group_p).sum(dim=-1) for g in range(n_groups)], dim=-1)
    ends[:, -1] = length
    bounds = torch.cat([torch.zeros(rows, 1, dtype=ends.dtype, device=ends.device), ends], dim=-1)
    positions = torch.stack(
        [
            torch.cat(
                [
                    torch.randperm(int(bounds[i, g + 1] - bounds[i, g])).to(bounds.device) + bounds[i, g]
                    for g in range(n_groups)
                ]
            )
            for i in range(rows)
        ]
    ).to(order.device)
    return sorted_logits, order.gather(-1, positions)
