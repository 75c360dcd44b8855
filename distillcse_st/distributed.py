"""Cross-process gathering for the DistillCSE losses (``gather_across_devices=True``).

In a multi-process run (DDP through ``torchrun`` or ``accelerate launch``), every process holds
``R`` rows of a global batch of ``C = world_size * R`` sentences. With gathering on, each process
scores its own anchors against all ``C`` candidates: the student embeddings are gathered with
gradients (:func:`sentence_transformers.util.all_gather_with_grad`, whose backward pass sends every
candidate's gradient back to the process that computed it), the teacher rows and the token ids
(for duplicate detection) without. The loss of a process is the mean over its own anchors, so the
average that DDP takes over processes is the mean over the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from sentence_transformers.util import all_gather, all_gather_with_grad, get_rank, get_world_size
from sentence_transformers.util.environment import is_dist_initialized
from torch import Tensor

__all__ = ["all_gather", "all_gather_with_grad", "gather_token_rows", "is_distributed", "rank_offset"]


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return is_dist_initialized() and get_world_size() > 1


def rank_offset(local_rows: int) -> int:
    """Row of the global batch where this process's rows start (equal local batch sizes)."""
    return get_rank() * local_rows


def check_equal_batch_sizes(local_rows: int, device: torch.device) -> None:
    """Refuse, on every process at once, a step whose local batch sizes differ across processes."""
    sizes = torch.tensor([local_rows], device=device)
    gathered = [torch.zeros_like(sizes) for _ in range(get_world_size())]
    dist.all_gather(gathered, sizes)
    sizes = [int(size) for size in torch.cat(gathered).tolist()]
    if len(set(sizes)) > 1:
        raise ValueError(
            f"gather_across_devices needs the same batch size on every process, got {sizes}: "
            "set dataloader_drop_last=True (SentenceTransformerTrainingArguments) so no short last batch remains."
        )


def gather_token_rows(input_ids: Tensor, pad_id: int = -1) -> Tensor:
    """All processes' ``(R, L)`` token rows, right-padded with ``pad_id`` to the longest ``L``: ``(C, L_max)``."""
    check_equal_batch_sizes(input_ids.size(0), input_ids.device)
    length = torch.tensor(input_ids.size(1), device=input_ids.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    padded = F.pad(input_ids, (0, int(length) - input_ids.size(1)), value=pad_id)
    return all_gather(padded)
