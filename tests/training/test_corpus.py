from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from distillcse_st.errors import InputError
from distillcse_st.training.corpus import load_corpus

LINES = ["First sentence.", "", "Second sentence.", "  ", "First sentence.", "Third one."]
EXPECTED = ["First sentence.", "Second sentence.", "Third one."]


def test_txt_drops_blank_and_duplicates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    with caplog.at_level("INFO", logger="distillcse_st"):
        dataset = load_corpus(path)
    assert dataset.column_names == ["text"] and dataset["text"] == EXPECTED
    assert "6 lines, dropped 2 blank and 1 duplicate -> 3 sentences" in caplog.text


def test_gzip_jsonl_csv_tsv_and_datasets_dir(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "c.txt.gz", "wt", encoding="utf-8") as file:
        file.write("\n".join(LINES))
    (tmp_path / "c.jsonl").write_text(
        "".join(json.dumps({"id": i, "sentence": text}) + "\n" for i, text in enumerate(LINES)), encoding="utf-8"
    )
    (tmp_path / "c.csv").write_text("id,sentence\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(LINES)))
    (tmp_path / "c.tsv").write_text("sentence\n" + "".join(f"{t}\n" for t in LINES))
    DatasetDict({"train": Dataset.from_dict({"sentence": LINES, "n": list(range(6))})}).save_to_disk(tmp_path / "d")
    assert load_corpus(tmp_path / "c.txt.gz")["text"] == EXPECTED
    assert load_corpus(tmp_path / "c.jsonl", text_field="sentence")["text"] == EXPECTED
    assert load_corpus(tmp_path / "c.csv", column="sentence")["text"] == EXPECTED
    assert load_corpus(tmp_path / "c.tsv")["text"] == EXPECTED
    assert load_corpus(tmp_path / "d", column="sentence")["text"] == EXPECTED
    assert load_corpus(tmp_path / "c.txt.gz", max_sentences=2)["text"] == EXPECTED[:2]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "corpus not found"),
        ("empty.txt", b"\n \n", "the corpus is empty"),
        ("latin1.txt", "ok line\ncaf\xe9 au lait\n".encode("latin-1"), "line 2 is not valid UTF-8"),
        ("bad.jsonl", b'{"text": "a"}\n{"text": \n', "line 2 is not valid JSON"),
        ("two.jsonl", b'{"a": "x", "b": "y"}\n', "name the text field or column with --text-field"),
        ("c.csv", b"a,b\nx,y\n", "with --column"),
        ("c.parquet", b"x", "unknown corpus format"),
    ],
)
def test_errors(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_corpus(path)
