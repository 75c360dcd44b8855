"""Tiny STS jsonl fixtures for the evaluation tests (the tiny model comes from ``tests/conftest.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

PAIRS = [
    ("A man is playing a guitar on the stage.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion in the kitchen.", "A woman cuts an onion.", 4.2),
    ("The cat sleeps on the warm windowsill.", "Two dogs are running through the field.", 0.6),
    ("Two dogs are running through the green field.", "Dogs run outside.", 3.6),
    ("A child is reading a book under a tree.", "A kid reads under a tree.", 3.9),
    ("The stock market fell sharply on Monday.", "A plane landed safely.", 0.0),
    ("A plane landed safely despite the strong wind.", "An airplane landed in the wind.", 4.5),
    ("A chef is preparing pasta with tomato sauce.", "A man is playing a guitar.", 0.4),
    ("The moon was bright over the quiet village.", "The village was quiet under the moon.", 4.0),
    ("A boy is riding a bicycle down the hill.", "The stock market fell.", 0.2),
    ("Snow covered the roofs of the small town.", "A woman cuts an onion.", 0.1),
    ("A girl is playing the piano in the living room.", "Someone plays music at home.", 2.8),
]


def write_jsonl(path: Path, pairs: Sequence[tuple[str, str, float]] = PAIRS) -> Path:
    """Write pairs in the shared STS jsonl format (``sentence1``, ``sentence2``, ``score``, ``subset``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for s1, s2, score in pairs:
            f.write(json.dumps({"sentence1": s1, "sentence2": s2, "score": score, "subset": "toy"}) + "\n")
    return path


@pytest.fixture
def sts_dir(tmp_path: Path) -> Path:
    """A data dir with tiny STS12, STSBenchmark (test) and STSBenchmark-dev files."""
    data_dir = tmp_path / "sts"
    write_jsonl(data_dir / "STS12.jsonl")
    write_jsonl(data_dir / "STSBenchmark.jsonl", PAIRS[::-1][:10])
    write_jsonl(data_dir / "STSBenchmark-dev.jsonl", PAIRS[:8])
    return data_dir
