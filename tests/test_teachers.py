"""add_teacher_embeddings (issue 26): chunked, streamed into the dataset, float16, multi-process encoding.

The reference is the implementation before issue 26, restated compactly: every distinct text of a column
encoded in one :func:`encode_stacked` call, each row taken from its text's first occurrence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from datasets.fingerprint import get_temporary_cache_files_directory
from sentence_transformers import SentenceTransformer

from distillcse_st.teachers import add_teacher_embeddings, check_stacked_labels, encode_stacked

WEIGHTS = [0.3, 0.7]


@pytest.fixture
def teachers(tiny_teacher_dir: Path, other_vocab_teacher_dir: Path) -> list[SentenceTransformer]:
    return [SentenceTransformer(str(path), device="cpu") for path in (tiny_teacher_dir, other_vocab_teacher_dir)]


@pytest.fixture
def pairs(corpus: list[str]) -> Dataset:
    """Anchor/positive pairs with duplicates inside each column, far apart and next to each other."""
    anchors = corpus + corpus[:5] + [corpus[7]] * 3
    return Dataset.from_dict({"anchor": anchors, "positive": anchors[::-1]})


def previous_rows(
    dataset: Dataset, teachers: Sequence[SentenceTransformer], columns: list[str], prompts: Mapping[str, str]
) -> np.ndarray:
    """``(rows, columns, width)`` labels as the implementation before issue 26 computed them."""
    encoded = []
    for name in columns:
        texts = dataset[name]
        unique_texts = list(dict.fromkeys(texts))
        stacked = encode_stacked(unique_texts, teachers, WEIGHTS, show_progress_bar=False, prompt=prompts.get(name))
        encoded.append(stacked.numpy()[[unique_texts.index(text) for text in texts]])
    return np.stack(encoded, axis=1)


def labels(dataset: Dataset) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[:]["label"])


CASES = {
    "one column": ("anchor", {}),
    "two columns with a prompt": (["anchor", "positive"], {"anchor": "query: "}),
}


@pytest.mark.parametrize("column, prompts", CASES.values(), ids=CASES.keys())
def test_rows_equal_the_previous_implementation_bit_for_bit(teachers, pairs, column, prompts):
    columns = [column] if isinstance(column, str) else column
    expected = previous_rows(pairs, teachers, columns, prompts)
    result = add_teacher_embeddings(pairs, teachers, WEIGHTS, column=column, prompts=prompts, show_progress_bar=False)
    assert result.column_names == [*pairs.column_names, "label"]
    rows = labels(result)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, expected[:, 0] if isinstance(column, str) else expected)


@pytest.mark.parametrize("column, prompts", CASES.values(), ids=CASES.keys())
def test_small_chunks_keep_duplicates_equal_to_their_first_occurrence(teachers, pairs, column, prompts):
    """Chunks change which texts share a padded batch (last bits only); a duplicate still copies its first row."""
    columns = [column] if isinstance(column, str) else column
    expected = previous_rows(pairs, teachers, columns, prompts)
    rows = labels(add_teacher_embeddings(pairs, teachers, WEIGHTS, column=column, prompts=prompts, chunk_size=5,
                                         show_progress_bar=False)).reshape(expected.shape)
    np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-6)
    for position, name in enumerate(columns):
        texts = pairs[name]
        first = [texts.index(text) for text in texts]
        np.testing.assert_array_equal(rows[:, position], rows[first, position])


def test_at_most_a_chunk_of_texts_is_encoded_at_a_time(teachers, pairs, monkeypatch):
    sizes = []
    for teacher in teachers:
        encode = teacher.encode
        monkeypatch.setattr(teacher, "encode", lambda texts, encode=encode, **kwargs: sizes.append(len(texts))
                            or encode(texts, **kwargs))
    add_teacher_embeddings(pairs, teachers, column=["anchor", "positive"], chunk_size=7, show_progress_bar=False)
    distinct = len(set(pairs["anchor"])) + len(set(pairs["positive"]))
    assert max(sizes) == 7 and sum(sizes) == distinct * len(teachers)


def test_float16_stores_the_float32_rows_rounded_and_is_read_as_valid_labels(teachers, pairs):
    full = add_teacher_embeddings(pairs, teachers, WEIGHTS, column="anchor", show_progress_bar=False)
    half = add_teacher_embeddings(pairs, teachers, WEIGHTS, column="anchor", dtype="float16", show_progress_bar=False)
    assert half.features["label"].feature.dtype == "float16"
    np.testing.assert_array_equal(labels(half), labels(full).astype(np.float16))
    check_stacked_labels(torch.tensor(half["label"]), len(pairs), "a loss")


@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory dataset", "dataset on disk"])
def test_the_column_is_read_memory_mapped_from_a_temporary_cache_file(teachers, pairs, tmp_path, on_disk):
    if on_disk:
        pairs.save_to_disk(str(tmp_path / "pairs"))
    dataset = load_from_disk(str(tmp_path / "pairs")) if on_disk else pairs
    result = add_teacher_embeddings(dataset, teachers, WEIGHTS, column="anchor", show_progress_bar=False)
    directory = Path(get_temporary_cache_files_directory())
    assert [Path(file["filename"]).parent for file in result.cache_files] == [directory]
    expected = previous_rows(pairs, teachers, ["anchor"], {})[:, 0]
    np.testing.assert_array_equal(labels(result), expected)


def test_devices_encode_with_the_sentence_transformers_pool(teacher, pairs):
    """One spawned CPU process per teacher: the rows of in-process encoding, and the teacher left in place."""
    expected = labels(add_teacher_embeddings(pairs, [teacher], column="anchor", show_progress_bar=False))
    result = add_teacher_embeddings(pairs, [teacher], column="anchor", devices=["cpu"], show_progress_bar=False)
    np.testing.assert_allclose(labels(result), expected, rtol=0, atol=1e-6)
    assert teacher.device.type == "cpu"


@pytest.mark.parametrize("kwargs, message", [
    ({}, "Name the text column"),
    ({"column": "missing"}, "not in the dataset"),
    ({"column": "anchor", "label_column": "positive"}, "already has a 'positive' column"),
    ({"column": "anchor", "dtype": "bfloat16"}, "dtype must be one of"),
    ({"column": "anchor", "chunk_size": 0}, "chunk_size must be a positive"),
])
def test_bad_arguments_are_refused_with_the_reason(teacher, pairs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        add_teacher_embeddings(pairs, [teacher], show_progress_bar=False, **kwargs)
