"""Fixtures of the training tests: a tiny STS dev file, a corpus file, and fast Trainer options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import CORPUS

FAST_TRAINING = {
    "per_device_train_batch_size": 8,
    "max_steps": 4,
    "eval_steps": 2,
    "save_steps": 2,
    "logging_steps": 2,
    "disable_tqdm": True,
}
"""A few steps of batch 8, evaluating and checkpointing every 2 steps."""

FAST_ARGS = [
    "--batch-size",
    "8",
    "--max-steps",
    "4",
    "--eval-steps",
    "2",
    "--save-steps",
    "2",
    "--logging-steps",
    "2",
    "--no-progress",
]
"""The same as command-line options."""


@pytest.fixture(scope="session")
def dev_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-pair STS jsonl made of the corpus sentences (fast to evaluate)."""
    path = tmp_path_factory.mktemp("dev") / "dev.jsonl"
    pairs = [
        {"sentence1": CORPUS[i], "sentence2": CORPUS[(i * 7 + 3) % len(CORPUS)], "score": float(i % 6)}
        for i in range(16)
    ]
    path.write_text("".join(json.dumps(pair) + "\n" for pair in pairs), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    return path
