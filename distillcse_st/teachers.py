"""Teachers for DistillCSE: live frozen models, or their embeddings precomputed into a dataset column.

A live :class:`TeacherEnsemble` runs every teacher on every batch. :func:`add_teacher_embeddings`
encodes a text column once per teacher instead and stores the stacked, weighted embeddings in a
``label`` column, so that the averaged teacher similarity of a batch is a single matmul
(:func:`~distillcse_st.similarity.similarity_from_stacked`) whatever the number of teachers.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import batch_to_device
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from distillcse_st.features import batch_size, slice_batch, token_id_lists
from distillcse_st.similarity import similarity_from_stacked, stack_teacher_embeddings

if TYPE_CHECKING:
    from datasets import Dataset

#: Relative tolerance on the squared norms of the rows of a precomputed label batch, which must all
#: equal the sum of the teacher weights (unit blocks scaled by ``sqrt(w_k)``); loose enough for labels
#: stored in float16.
LABEL_NORM_RTOL = 1e-2

#: Texts encoded at a time by :func:`add_teacher_embeddings`: bounds the embeddings it holds in memory.
CHUNK_SIZE = 8192

#: The storage types of an :func:`add_teacher_embeddings` column.
LABEL_DTYPES = ("float32", "float16")


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
    """A short, human-readable name for a teacher: its hub id, else the name of the directory it came from.

    Never a local absolute path: the name lands in model cards meant to be shared.
    """
    card = model.model_card_data
    name = card.model_id or card.base_model
    if not name:
        config = getattr(getattr(model[0], "auto_model", None), "config", None)
        name = getattr(config, "_name_or_path", "") or type(model[0]).__name__
    name = str(name)
    return Path(name).name if Path(name).is_absolute() or Path(name).exists() else name


def freeze(model: SentenceTransformer) -> SentenceTransformer:
    """Put a teacher in eval mode (no dropout) and stop its parameters from receiving gradients."""
    model.eval()
    model.requires_grad_(False)
    return model


def decode_texts(features: dict[str, Any], tokenizer: Any) -> list[str]:
    """The texts of a batch, decoded from its tokens (special tokens dropped), for any student input module."""
    ids = token_id_lists(features)
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer.batch_decode(ids, skip_special_tokens=True)
    return tokenizer.decode_batch(ids, skip_special_tokens=True)  # a `tokenizers.Tokenizer` (StaticEmbedding)


def _vocab(tokenizer: Any) -> dict[str, int] | None:
    return tokenizer.get_vocab() if isinstance(tokenizer, PreTrainedTokenizerBase) else None


class TeacherEnsemble(nn.Module):
    """K frozen teachers whose in-batch cosine similarities are averaged with weights ``w_k``.

    A teacher whose vocabulary differs from the student's, whose ``max_seq_length`` is shorter, or whose
    student has no transformers tokenizer (a StaticEmbedding student) gets the batch's texts decoded from
    the student's tokens and re-tokenized with its own tokenizer, as in
    :class:`~sentence_transformers.sentence_transformer.losses.GISTEmbedLoss`.
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
        self.student_tokenizer = student.tokenizer
        student_vocab = _vocab(student.tokenizer)
        student_length = student.max_seq_length or 0
        self.must_retokenize = [
            student_vocab is None
            or _vocab(teacher.tokenizer) != student_vocab
            or (teacher.max_seq_length or 0) < student_length
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
        size = batch_size(features)
        if mini_batch_size is None or mini_batch_size >= size or "offsets" in features:
            return self._embed_batch(features)
        parts = [
            self._embed_batch(slice_batch(features, begin, begin + mini_batch_size))
            for begin in range(0, size, mini_batch_size)
        ]
        return [torch.cat(chunks) for chunks in zip(*parts)]

    @torch.no_grad()
    def _embed_batch(self, features: dict[str, Any]) -> list[Tensor]:
        texts = None
        embeddings = []
        for teacher, retokenize in zip(self.teachers, self.must_retokenize):
            if retokenize:
                if texts is None:
                    texts = decode_texts(features, self.student_tokenizer)
                teacher_features = batch_to_device(teacher.preprocess(texts), teacher.device)
            else:
                # A shallow copy: modules write their outputs into the features they are given.
                teacher_features = {key: value.to(teacher.device) if isinstance(value, Tensor) else value
                                    for key, value in features.items()}
            embeddings.append(teacher(teacher_features)["sentence_embedding"])
        return embeddings

    def rows(self, features: dict[str, Any], mini_batch_size: int | None = None) -> Tensor:
        """The batch's stacked teacher rows (:func:`~distillcse_st.similarity.stack_teacher_embeddings`)."""
        return stack_teacher_embeddings(self.embed(features, mini_batch_size), self.weights)

    def similarity(self, features: dict[str, Any], mini_batch_size: int | None = None) -> Tensor:
        """The weighted average of the teachers' ``(B, B)`` cosine-similarity matrices."""
        return similarity_from_stacked(self.rows(features, mini_batch_size))


def check_stacked_labels(labels: Tensor | None, rows: int, owner: str) -> Tensor:
    """Validate a batch of :func:`add_teacher_embeddings` rows for ``rows`` texts; ``owner`` names the loss.

    Refused, with the reason: no labels; not a float ``(rows, width)`` tensor; NaN or inf; rows whose
    squared norms differ (each row of the layout is K unit blocks scaled by ``sqrt(w_k)``, so all rows have
    the squared norm ``sum_k w_k``: raw, unnormalised embeddings would make the dot product of two rows
    something other than a cosine).
    """
    if labels is None:
        raise ValueError(
            f"{owner} was built without live teachers, so the batch needs a 'label' column of precomputed "
            "teacher embeddings: see distillcse_st.add_teacher_embeddings."
        )
    if labels.ndim != 2 or labels.size(0) != rows or not labels.is_floating_point():
        raise ValueError(
            f"Precomputed teacher labels must be a float tensor of shape (batch_size={rows}, dim), got "
            f"{tuple(labels.shape)} of {labels.dtype}: build the column with distillcse_st.add_teacher_embeddings."
        )
    if not bool(labels.isfinite().all()):
        raise ValueError("Precomputed teacher labels contain NaN or inf values.")
    norms = labels.float().pow(2).sum(dim=1)
    if bool(((norms - norms.mean()).abs() > LABEL_NORM_RTOL * norms.mean().clamp_min(1e-12)).any()):
        raise ValueError(
            f"Precomputed teacher label rows have different norms (squared norms from {norms.min().item():.4g} "
            f"to {norms.max().item():.4g}); rows made by distillcse_st.add_teacher_embeddings all have the "
            "squared norm sum_k w_k. Raw (unnormalised) teacher embeddings are not a valid label column."
        )
    return labels


def stacked_width(teachers: Sequence[SentenceTransformer]) -> int:
    """The width of a stacked label row: the teachers' embedding sizes added up."""
    return sum(teacher.get_embedding_dimension() for teacher in teachers)


def encode_stacked(
    texts: Sequence[str],
    teachers: Sequence[SentenceTransformer],
    weights: Sequence[float] | None = None,
    batch_size: int = 256,
    show_progress_bar: bool = True,
    prompt: str | None = None,
    *,
    pools: Sequence[dict[str, Any] | None] | None = None,
) -> Tensor:
    """``(len(texts), sum_k dim_k)`` stacked teacher embeddings (see :func:`add_teacher_embeddings`).

    ``pools``: one multi-process pool of sentence-transformers per teacher
    (:meth:`~sentence_transformers.SentenceTransformer.start_multi_process_pool`), or None to encode in this process.
    """
    weights = resolve_weights(weights, len(teachers))
    embeddings = [
        teacher.encode(
            list(texts), batch_size=batch_size, convert_to_tensor=True, show_progress_bar=show_progress_bar,
            prompt=prompt, pool=pool,
        ).cpu()
        for teacher, pool in zip(teachers, pools or [None] * len(teachers), strict=True)
    ]
    return stack_teacher_embeddings(embeddings, weights)


def add_teacher_embeddings(
    dataset: Dataset,
    teachers: Sequence[SentenceTransformer],
    weights: Sequence[float] | None = None,
    column: str | Sequence[str] | None = None,
    label_column: str = "label",
    batch_size: int = 256,
    show_progress_bar: bool = True,
    prompts: str | Mapping[str, str] | None = None,
    dtype: str = "float32",
    chunk_size: int = CHUNK_SIZE,
    devices: Sequence[str] | None = None,
) -> Dataset:
    """Precompute the teachers once: add a ``label`` column of stacked teacher embeddings.

    Every text of ``column`` (the dataset's only column by default) is encoded by each teacher;
    the L2-normalised embeddings are concatenated with block ``k`` scaled by ``sqrt(w_k)``, so that
    the dot product of two rows is ``sum_k w_k cos_k(i, j)``. Duplicate texts are encoded once.
    Pass the result to a DistillCSE loss built with ``teacher=None`` / ``teachers=None``.

    ``column`` may list several text columns (e.g. anchor and positive, for
    :class:`~distillcse_st.losses.InBatchDistillLoss` over MultipleNegativesRankingLoss): each label is then
    ``(num_columns, width)``, one row per column. ``prompts`` are the prompts the student trains with
    (the Trainer's ``prompts`` argument: one string, or a column -> prompt mapping); the teachers encode
    the prompted texts, exactly as a live teacher sees the prompted batch.

    The column is built in chunks of ``chunk_size`` texts, so that at most a chunk of embeddings is held in
    memory: the distinct texts are encoded into a temporary ``.npy`` file, then :meth:`datasets.Dataset.map`
    writes the rows into an Arrow file in datasets' temporary cache directory (removed when Python exits),
    which the returned dataset reads memory-mapped. Both files are the size of the column, under ``TMPDIR``.
    ``dtype="float16"`` stores the rows rounded, in half the space; the Trainer's batches and the losses read
    them as float32.
    ``devices`` (e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu"] * 4``) encodes with sentence-transformers'
    multi-process pool, one process per device and teacher; the teachers are moved back where they were.
    """
    from datasets.fingerprint import generate_random_fingerprint, get_temporary_cache_files_directory

    columns = _label_columns(dataset, column, label_column)
    weights = resolve_weights(weights, len(teachers))
    if dtype not in LABEL_DTYPES:
        raise ValueError(f"dtype must be one of {LABEL_DTYPES}, got {dtype!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of texts, got {chunk_size}.")
    width = stacked_width(teachers)
    with tempfile.TemporaryDirectory(prefix="teacher_embeddings-") as tmp, _pools(teachers, devices) as pools:
        encoded = []  # per column: the row of each text in the file of its distinct texts, and that file
        for number, name in enumerate(columns):
            prompt = prompts.get(name) if isinstance(prompts, Mapping) else prompts
            texts = dataset[name]
            unique_texts = list(dict.fromkeys(texts))
            row_of = {text: row for row, text in enumerate(unique_texts)}
            rows = np.fromiter((row_of[text] for text in texts), dtype=np.int64, count=len(texts))
            stacked = np.lib.format.open_memmap(
                Path(tmp) / f"{number}.npy", mode="w+", dtype=dtype, shape=(len(unique_texts), width)
            )
            encode_stacked_into(
                stacked, unique_texts, teachers, weights, range(len(unique_texts)), chunk_size, batch_size,
                show_progress_bar, prompt, pools,
            )
            encoded.append((rows, stacked))

        def label_rows(_batch: Mapping[str, list], indices: list[int]) -> dict[str, np.ndarray]:
            blocks = [stacked[rows[indices]] for rows, stacked in encoded]
            if isinstance(column, str) or column is None:
                return {label_column: blocks[0]}
            return {label_column: np.stack(blocks, axis=1)}  # (num_columns, width) per row

        fingerprint = generate_random_fingerprint()
        return dataset.map(
            label_rows, with_indices=True, batched=True, batch_size=chunk_size, load_from_cache_file=False,
            new_fingerprint=fingerprint, desc=f"Writing the {label_column!r} column",
            cache_file_name=str(Path(get_temporary_cache_files_directory()) / f"{label_column}-{fingerprint}.arrow"),
        )


def encode_stacked_into(
    output: np.ndarray,
    texts: Sequence[str],
    teachers: Sequence[SentenceTransformer],
    weights: Sequence[float] | None,
    rows: range,
    chunk_size: int = CHUNK_SIZE,
    batch_size: int = 256,
    show_progress_bar: bool = True,
    prompt: str | None = None,
    pools: Sequence[dict[str, Any] | None] | None = None,
) -> None:
    """Write :func:`encode_stacked` of ``texts[i]`` into ``output[i]`` for each ``i`` in ``rows``.

    ``chunk_size`` texts at a time, so that at most a chunk of embeddings is held in memory besides ``output``
    (e.g. a memory-mapped ``.npy``).
    """
    for begin in range(rows.start, rows.stop, chunk_size):
        end = min(begin + chunk_size, rows.stop)
        output[begin:end] = encode_stacked(
            texts[begin:end], teachers, weights, batch_size, show_progress_bar, prompt, pools=pools
        ).numpy()


@contextmanager
def _pools(teachers: Sequence[SentenceTransformer], devices: Sequence[str] | None) -> Iterator[list[Any]]:
    """One multi-process pool of sentence-transformers per teacher on ``devices``; without devices, none."""
    if devices is None:
        yield [None] * len(teachers)
        return
    with ExitStack() as stack:
        pools = []
        for teacher in teachers:
            stack.callback(teacher.to, teacher.device)  # the pool leaves the teacher on the CPU
            pools.append(teacher.start_multi_process_pool(list(devices)))
            stack.callback(teacher.stop_multi_process_pool, pools[-1])
        yield pools


def _label_columns(dataset: Dataset, column: str | Sequence[str] | None, label_column: str) -> list[str]:
    if column is None:
        if len(dataset.column_names) != 1:
            raise ValueError(f"Name the text column(s): the dataset has columns {dataset.column_names}.")
        column = dataset.column_names[0]
    columns = [column] if isinstance(column, str) else list(column)
    missing = [name for name in columns if name not in dataset.column_names]
    if not columns or missing:
        raise ValueError(f"Column(s) {missing or columns} not in the dataset (columns: {dataset.column_names}).")
    if label_column in dataset.column_names:
        raise ValueError(f"The dataset already has a {label_column!r} column.")
    return columns
