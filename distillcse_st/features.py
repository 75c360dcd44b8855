"""What the losses need to know about a batch of ST features, whatever the student's input module.

A transformer student's features hold ``(B, L)`` ``input_ids``; a
:class:`~sentence_transformers.sentence_transformer.modules.StaticEmbedding` student's hold a flat token
stream with one ``offsets`` entry per text; a flattened (FA2) batch holds ``cu_seq_lens_q``. These helpers
read the batch size and the token rows from any of them, and slice a padded batch into mini-batches.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def batch_size(features: dict[str, Any]) -> int:
    """The number of texts in the batch (not the number of tokens of a flat token stream)."""
    if "cu_seq_lens_q" in features:
        return len(features["cu_seq_lens_q"]) - 1
    if isinstance(features.get("offsets"), Tensor):
        return features["offsets"].numel()
    for key in ("input_ids", "attention_mask"):
        if isinstance(features.get(key), Tensor):
            return features[key].shape[0]
    return next(value.shape[0] for value in features.values() if isinstance(value, Tensor) and value.ndim > 0)


def token_rows(features: dict[str, Any]) -> Tensor | None:
    """``(B, L)`` token ids with padding set to -1 (the same text gives the same row however it is padded).

    ``None`` when the batch has no such rows (a flat token stream, a flattened batch).
    """
    input_ids = features.get("input_ids")
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2 or "offsets" in features:
        return None
    attention_mask = features.get("attention_mask")
    if isinstance(attention_mask, Tensor) and attention_mask.shape == input_ids.shape:
        return input_ids.masked_fill(attention_mask == 0, -1)
    return input_ids


def token_id_lists(features: dict[str, Any]) -> list[list[int]]:
    """Each text's token ids, without padding: from ``(B, L)`` rows or from a flat stream and its offsets."""
    input_ids = features["input_ids"]
    if "offsets" in features:
        bounds = [*features["offsets"].tolist(), input_ids.numel()]
        flat = input_ids.tolist()
        return [flat[begin:end] for begin, end in zip(bounds[:-1], bounds[1:])]
    rows = token_rows(features)
    return [[token for token in row if token >= 0] for row in rows.tolist()]


def slice_batch(features: dict[str, Any], begin: int, end: int) -> dict[str, Any]:
    """Texts ``begin:end`` of a padded batch: every tensor indexed by text is sliced, the rest is kept."""
    size = batch_size(features)
    return {
        key: value[begin:end] if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == size else value
        for key, value in features.items()
    }
