"""Teachers for DistillCSE: live frozen models, or their embeddings precomputed into a dataset column.

A live :class:`TeacherEnsemble` runs every teacher on every batch. :func:`add_teacher_embeddings`
encodes a text column once per teacher instead and stores the stacked, weighted embeddings in a
``label`` column, so that the averaged teacher similarity of a batch is a single matmul
(:func:`~distillcse_st.similarity.similarity_from_stacked`) whatever the number of teachers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.gradcache import _create_minibatch
from sentence_transformers.util import batch_to_device
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from distillcse_st.similarity import stack_teacher_embeddings, weighted_similarity


def resolve_weights(weights: Sequence[float] | None, num_teachers: int) -> list[float]:
    """Validate teacher weights; ``None`` gives the paper's uniform ``1 / K``."""
    if num_teachers < 1:
        raise ValueError("At least one teacher is needed.")
    if weights is None:
        return [1.0 / num_teachers] * num_teachers
    weights = [float(weight) for weight in weights]
    if len(weights) != num_teachers:
        raise ValueError(f"Got {len(weights)} weights for {num_teachers} teachers.")
    if any(not math.isfinite(weight) or weight < 0 for weight in weights) or sum(weights) <= 0:
        raise ValueError(f"Teacher weights must be finite, non-negative and not all zero, got {weights}.")
    return weights


def teacher_name(model: SentenceTransformer) -> str:
    """A short, human-readable name for a teacher (its hub id or the directory it was loaded from)."""
    card = model.model_card_data
    name = card.model_id or card.base_model
    if not name:
        config = getattr(getattr(model[0], "auto_model", None), "config", None)
        name = getattr(config, "_name_or_path", "") or type(model[0]).__name__
    return str(name)


def freeze(model: SentenceTransformer) -> SentenceTransformer:
    """Put a teacher in eval mode (no dropout) and stop its parameters from receiving gradients."""
    model.eval()
    model.requires_grad_(False)
    return model


def _tokenizer(model: SentenceTransformer) -> PreTrainedTokenizerBase:
    tokenizer = getattr(model, "tokenizer", None)
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise ValueError("Students and live teachers must use a transformers tokenizer (PreTrainedTokenizerBase).")
    return tokenizer


class TeacherEnsemble(nn.Module):
    """K frozen teachers whose in-batch cosine similarities are averaged with weights ``w_k``.

    A teacher whose vocabulary differs from the student's, or whose ``max_seq_length`` is shorter,
    gets the batch's texts decoded from the student's tokens and re-tokenized with its own
    tokenizer, as in :class:`~sentence_transformers.sentence_transformer.losses.GISTEmbedLoss`.
    The teachers stay in eval mode whatever mode the ensemble is switched to.
    """

    def __init__(
        self,
        student: SentenceTransformer,
        teachers: Sequence[SentenceTransformer],
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        teachers = list(teachers)
        self.weights = resolve_weights(weights, len(teachers))
        self.teachers = nn.ModuleList(freeze(teacher) for teacher in teachers)
        # Sentences per teacher forward pass when embed() is not told; None: the whole batch at once.
        self.mini_batch_size: int | None = None
        student_tokenizer = _tokenizer(student)
        student_vocab = student_tokenizer.get_vocab()
        self.student_tokenizer = student_tokenizer
        self.must_retokenize = [
            _tokenizer(teacher).get_vocab() != student_vocab or teacher.max_seq_length < student.max_seq_length
            for teacher in teachers
        ]

    def train(self, mode: bool = True) -> TeacherEnsemble:
        super().train(mode)
        self.teachers.eval()
        return self

    def names(self) -> list[str]:
        return [teacher_name(teacher) for teacher in self.teachers]

    @torch.no_grad()
    def embed(self, features: dict[str, Any], mini_batch_size: int | None = None) -> list[Tensor]:
        """Each teacher's embeddings of the batch the student sees as ``features``.

        With ``mini_batch_size`` (default: the ensemble's ``mini_batch_size`` attribute, which the cached
        losses set), the teachers run on slices of that many sentences at a time, so that their
        activation memory does not grow with the batch.
        """
        if mini_batch_size is None:
            mini_batch_size = self.mini_batch_size
        batch_size = features["input_ids"].size(0)
        if mini_batch_size is None or mini_batch_size >= batch_size:
            return self._embed_batch(features)
        parts = [
            self._embed_batch(_create_minibatch(features, begin, begin + mini_batch_size))
            for begin in range(0, batch_size, mini_batch_size)
        ]
        return [torch.cat(chunks) for chunks in zip(*parts)]

    @torch.no_grad()
    def _embed_batch(self, features: dict[str, Any]) -> list[Tensor]:
        texts = None
        embeddings = []
        for teacher, retokenize in zip(self.teachers, self.must_retokenize):
            if retokenize:
                if texts is None:
                    texts = self.student_tokenizer.batch_decode(features["input_ids"], skip_special_tokens=True)
                teacher_features = batch_to_device(teacher.preprocess(texts), teacher.device)
            else:
                # A shallow copy: modules write their outputs into the features they are given.
                teacher_features = {key: value.to(teacher.device) if isinstance(value, Tensor) else value
                                    for key, value in features.items()}
            embeddings.append(teacher(teacher_features)["sentence_embedding"])
        return embeddings

    def similarity(self, features: dict[str, Any], mini_batch_size: int | None = None) -> Tensor:
        """The weighted average of the teachers' ``(B, B)`` cosine-similarity matrices."""
        return weighted_similarity(self.embed(features, mini_batch_size), self.weights)


def encode_stacked(
    texts: Sequence[str],
    teachers: Sequence[SentenceTransformer],
    weights: Sequence[float] | None = None,
    batch_size: int = 256,
    show_progress_bar: bool = True,
) -> Tensor:
    """``(len(texts), sum_k dim_k)`` stacked teacher embeddings (see :func:`add_teacher_embeddings`)."""
    weights = resolve_weights(weights, len(teachers))
    embeddings = [
        teacher.encode(
            list(texts), batch_size=batch_size, convert_to_tensor=True, show_progress_bar=show_progress_bar
        ).cpu()
        for teacher in teachers
    ]
    return stack_teacher_embeddings(embeddings, weights)


def add_teacher_embeddings(
    dataset: Dataset,
    teachers: Sequence[SentenceTransformer],
    weights: Sequence[float] | None = None,
    column: str | None = None,
    label_column: str = "label",
    batch_size: int = 256,
    show_progress_bar: bool = True,
) -> Dataset:
    """Precompute the teachers once: add a ``label`` column of stacked teacher embeddings.

    Every text of ``column`` (the dataset's only column by default) is encoded by each teacher;
    the L2-normalised embeddings are concatenated with block ``k`` scaled by ``sqrt(w_k)``, so that
    the dot product of two rows is ``sum_k w_k cos_k(i, j)``. Duplicate texts are encoded once.
    Pass the result to a DistillCSE loss built with ``teacher=None`` / ``teachers=None``.
    """
    if column is None:
        if len(dataset.column_names) != 1:
            raise ValueError(f"Name the text column: the dataset has columns {dataset.column_names}.")
        column = dataset.column_names[0]
    if column not in dataset.column_names:
        raise ValueError(f"Column {column!r} is not in the dataset (columns: {dataset.column_names}).")
    if label_column in dataset.column_names:
        raise ValueError(f"The dataset already has a {label_column!r} column.")
    texts = dataset[column]
    unique_texts = list(dict.fromkeys(texts))
    stacked = encode_stacked(unique_texts, teachers, weights, batch_size, show_progress_bar).numpy()
    row_of = {text: row for row, text in enumerate(unique_texts)}
    rows = np.fromiter((row_of[text] for text in texts), dtype=np.int64, count=len(texts))
    return dataset.add_column(label_column, list(stacked[rows]))
