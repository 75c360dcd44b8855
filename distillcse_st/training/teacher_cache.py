"""Precomputed teacher embeddings, cached on disk as a float16 ``.npy`` and read memory-mapped.

The cache holds :func:`~distillcse_st.teachers.encode_stacked` of a list of texts: the teachers'
normalised embeddings side by side, block ``k`` scaled by ``sqrt(w_k)``, so that a dot product of two rows
is the weighted teacher similarity. Its file name is a hash of the texts, the teachers' files, the weights
and the maximum sequence length, so any change makes a new cache; the number of processes that encoded it
is not part of it. In a multi-process run every process encodes its share of the rows into the one file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from datasets import Dataset

from distillcse_st.models import load_model
from distillcse_st.teachers import encode_stacked_into, resolve_weights, stacked_width
from distillcse_st.training.corpus import texts_digest

logger = logging.getLogger(__name__)

CHUNK = 32768
"""Texts encoded at a time: bounds the memory of the float32 embeddings before they go to disk."""


def _files_signature(directory: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(path.relative_to(directory)), path.stat().st_size, path.stat().st_mtime_ns)
        for path in directory.rglob("*")
        if path.is_file()
    )


def cache_key(
    texts: Sequence[str], teacher_dirs: Sequence[str | Path], weights: Sequence[float], max_seq_length: int
) -> str:
    """A hash of everything the cached embeddings depend on."""
    digest = hashlib.sha256(texts_digest(texts).encode())
    for directory in teacher_dirs:
        directory = Path(directory).resolve()
        digest.update(repr((str(directory), _files_signature(directory))).encode())
    digest.update(repr((list(map(float, weights)), max_seq_length)).encode())
    return digest.hexdigest()[:20]


def cached_teacher_embeddings(
    texts: Sequence[str],
    teacher_dirs: Sequence[str | Path],
    weights: Sequence[float] | None,
    cache_dir: str | Path,
    max_seq_length: int,
    state: PartialState,
    batch_size: int = 256,
    show_progress_bar: bool = True,
) -> np.ndarray:
    """The ``(len(texts), sum_k dim_k)`` stacked teacher embeddings, read-only memory-mapped float16.

    Computed once (teachers loaded from ``teacher_dirs``, inputs truncated at ``max_seq_length`` tokens
    as the student's), shared out between the processes of ``state``, and then read from ``cache_dir``.
    Every process of ``state`` must call it: they wait for each other.
    """
    weights = resolve_weights(weights, len(teacher_dirs))
    path = Path(cache_dir) / f"teachers-{cache_key(texts, teacher_dirs, weights, max_seq_length)}.npy"
    if path.is_file():
        logger.info("Teacher embeddings: using the cache %s", path)
    else:
        encode_into(path, texts, teacher_dirs, weights, max_seq_length, state, batch_size, show_progress_bar)
    return np.load(path, mmap_mode="r")


def encode_into(
    path: Path,
    texts: Sequence[str],
    teacher_dirs: Sequence[str | Path],
    weights: Sequence[float],
    max_seq_length: int,
    state: PartialState,
    batch_size: int,
    show_progress_bar: bool,
) -> None:
    """Write the cache ``path``: the main process creates it, every process encodes its share of the rows.

    The rows go into a temporary file, renamed to ``path`` once all processes have written theirs: an
    interrupted run leaves no incomplete cache under that name.
    """
    logger.info(
        "Teacher embeddings: encoding %d sentences with %d teacher(s) on %d process(es) into %s",
        len(texts), len(teacher_dirs), state.num_processes, path,
    )
    teachers = [load_model(directory, "teacher") for directory in teacher_dirs]
    for teacher in teachers:
        teacher.max_seq_length = min(teacher.max_seq_length or max_seq_length, max_seq_length)
    tmp = path.with_name(path.stem + ".tmp.npy")
    if state.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (len(texts), stacked_width(teachers))
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape).flush()
    state.wait_for_everyone()
    output = np.load(tmp, mmap_mode="r+")
    with state.split_between_processes(torch.arange(len(texts))) as shard:
        first, end = (int(shard[0]), int(shard[-1]) + 1) if len(shard) else (0, 0)
    encode_stacked_into(output, texts, teachers, weights, range(first, end), CHUNK, batch_size, show_progress_bar)
    output.flush()
    del output
    state.wait_for_everyone()
    if state.is_main_process:
        os.replace(tmp, path)
    state.wait_for_everyone()


class _LabelsFromCache:
    """A dataset transform that turns the ``row`` column into ``label`` rows read from the cache."""

    def __init__(self, embeddings: np.ndarray) -> None:
        self.embeddings = embeddings

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = batch.pop("row")
        batch["label"] = list(torch.from_numpy(self.embeddings[rows].astype(np.float32)))
        return batch


def with_cached_labels(dataset: Dataset, embeddings: np.ndarray) -> Dataset:
    """``dataset`` (row ``i`` embedded as ``embeddings[i]``) with a lazy ``label`` column read from the cache."""
    if len(dataset) != len(embeddings):
        raise ValueError(f"{len(dataset)} texts but {len(embeddings)} cached teacher embeddings")
    return dataset.add_column("row", list(range(len(dataset)))).with_transform(_LabelsFromCache(embeddings))
