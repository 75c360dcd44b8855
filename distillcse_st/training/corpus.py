"""Load a training corpus into a ``datasets.Dataset`` with one ``text`` column.

Formats: ``.txt`` (one sentence a line), ``.jsonl`` (``text_field``), ``.csv`` / ``.tsv`` (``column``), each
optionally gzipped, and a directory saved with ``datasets.save_to_disk``. Blank lines and exact duplicates
are dropped, and the counts are reported.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from datasets import Dataset, DatasetDict, DatasetInfo, load_from_disk

from distillcse_st.errors import InputError
from distillcse_st.files import read_json_lines, read_lines

logger = logging.getLogger(__name__)

FORMATS = (".txt", ".jsonl", ".csv", ".tsv")


def _pick(names: list[str], wanted: str | None, option: str, path: Path) -> str:
    """The text field/column: ``wanted``, else the only one, else ``text``."""
    if wanted is not None:
        if wanted not in names:
            raise InputError(f"{path}: no field or column {wanted!r} (found {names})")
        return wanted
    if len(names) == 1:
        return names[0]
    if "text" in names:
        return "text"
    raise InputError(f"{path}: name the text field or column with {option} (found {names})")


def _jsonl_texts(path: Path, text_field: str | None) -> Iterator[str]:
    for number, record in read_json_lines(path):
        if record is None:
            yield ""
            continue
        field = _pick(list(record), text_field, "--text-field", path)
        value = record[field]
        if not isinstance(value, str):
            raise InputError(f"{path}: line {number}: field {field!r} is not a string")
        yield value


def _table_texts(path: Path, column: str | None, delimiter: str) -> Iterator[str]:
    reader = csv.reader((line for _, line in read_lines(path)), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    index = header.index(_pick(header, column, "--column", path))
    for row in reader:
        yield row[index] if index < len(row) else ""


def _dataset_texts(path: Path, column: str | None) -> Iterable[str]:
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{path}: not a corpus file nor a saved datasets directory ({error})") from None
    if isinstance(dataset, DatasetDict):
        if "train" not in dataset:
            raise InputError(f"{path}: the DatasetDict has no 'train' split (splits: {list(dataset)})")
        dataset = dataset["train"]
    name = _pick(dataset.column_names, column, "--column", path)
    return (text if isinstance(text, str) else "" for text in dataset[name])


def _format(path: Path) -> str:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    suffix = suffixes[0].lower() if suffixes else ""
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown corpus format; use one of {', '.join(FORMATS)} (optionally .gz)")
    return suffix


def read_texts(path: str | Path, text_field: str | None = None, column: str | None = None) -> Iterable[str]:
    """The raw texts of a corpus, in file order, blank lines included."""
    path = Path(path)
    if path.is_dir():
        return _dataset_texts(path, column or text_field)
    if not path.is_file():
        raise InputError(f"corpus not found: {path}")
    suffix = _format(path)
    if suffix == ".txt":
        return (line for _, line in read_lines(path))
    if suffix == ".jsonl":
        return _jsonl_texts(path, text_field)
    return _table_texts(path, column, "\t" if suffix == ".tsv" else ",")


def texts_digest(texts: Iterable[str]) -> str:
    """A SHA-256 of a list of texts: identifies a corpus in run settings and cache keys."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    return digest.hexdigest()


def load_corpus(
    path: str | Path, text_field: str | None = None, column: str | None = None, max_sentences: int | None = None
) -> Dataset:
    """A ``Dataset`` with one ``text`` column: the corpus without blank lines and exact duplicates.

    ``max_sentences`` keeps the first that many sentences (after cleaning); the dataset is named after the
    file. Raises :class:`~distillcse_st.errors.InputError` for a missing, unreadable or empty corpus.
    """
    if max_sentences is not None and max_sentences < 1:
        raise InputError(f"max_sentences must be at least 1, got {max_sentences}")
    total = blank = 0
    unique: dict[str, None] = {}
    for text in read_texts(path, text_field, column):
        total += 1
        text = text.strip()
        if not text:
            blank += 1
        else:
            unique.setdefault(text, None)
    texts = list(unique)
    if not texts:
        raise InputError(f"{path}: the corpus is empty ({total} lines, {blank} blank)")
    logger.info(
        "Corpus %s: %d lines, dropped %d blank and %d duplicate -> %d sentences",
        path,
        total,
        blank,
        total - blank - len(texts),
        len(texts),
    )
    if max_sentences is not None and max_sentences < len(texts):
        logger.info("Using the first %d sentences.", max_sentences)
        texts = texts[:max_sentences]
    # The dataset's name (the file's) is how sentence-transformers' model card names the training data.
    return Dataset.from_dict({"text": texts}, info=DatasetInfo(dataset_name=Path(path).name))
