"""The demo's packaged STS-B files: licensed sources only, nothing of the held-out sets, rebuilt byte for byte."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import demo_data  # noqa: E402


def row(first: str, second: str, subset: str) -> dict:
    return {"sentence1": first, "sentence2": second, "score": 3.0, "subset": subset}


def test_train_sentences_keep_licensed_subsets_once_without_held_out_ones() -> None:
    train = [
        row("A cat sits.", "A dog runs.", "images"),
        row("Markets fall.", "a cat sits.", "headlines"),
        row("Secret text.", "More secret text.", "MSRpar"),
        row("Forum text.", "A dog runs.", "deft-forum"),
    ]
    kept = demo_data.train_sentences(train, held_out=["A DOG RUNS."])
    assert kept == ["A cat sits.", "Markets fall.", "a cat sits."]


def test_test_pairs_keep_licensed_subsets_unchanged() -> None:
    subsets = ["images", "MSRvid", "track5.en-en", "answer-answer"]
    test = [row(f"a{index}", f"b{index}", subset) for index, subset in enumerate(subsets)]
    assert demo_data.test_pairs(test) == [test[0], test[2]]


def test_packaged_files_are_what_the_builder_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (demo_data.STS_DIR / "STSBenchmark-train.jsonl").is_file():
        pytest.skip("the shared STS data is not beside the repository")
    monkeypatch.setattr(demo_data, "DATA", tmp_path)
    demo_data.main()
    for name in (demo_data.TRAIN_FILE, demo_data.TEST_FILE):
        assert (tmp_path / name).read_bytes() == (BENCHMARKS.parent / "distillcse_st" / "data" / name).read_bytes()
    pairs = [json.loads(line) for line in gzip.open(tmp_path / demo_data.TEST_FILE, "rt", encoding="utf-8")]
    sentences = set(gzip.open(tmp_path / demo_data.TRAIN_FILE, "rt", encoding="utf-8").read().lower().splitlines())
    test_sentences = {pair[key].strip().lower() for pair in pairs for key in ("sentence1", "sentence2")}
    assert len(pairs) == 625 and not sentences & test_sentences
