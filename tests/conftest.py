"""Shared fixtures: tiny BERT SentenceTransformers built offline in a temp dir, and a small corpus."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from tests.helpers import CORPUS, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT student (mean pooling, dropout 0.1) saved in ST format."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_student"), seed=0)


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny BERT with other weights and a vocabulary of its own (the student's minus its 10 rarest words),
    so that it re-tokenizes the student's decoded texts (tests/losses' ``shared_vocab_teacher`` does not)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_teacher"), seed=1, vocab_size=190)


@pytest.fixture(scope="session")
def other_vocab_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT with its own (lower-cased, smaller) vocabulary, max length and embedding size."""
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny_other_teacher"), seed=2, vocab_size=120, hidden_size=24, lowercase=True,
        max_seq_length=24,
    )


@pytest.fixture
def student(tiny_model_dir: Path) -> SentenceTransformer:
    torch.manual_seed(0)
    return SentenceTransformer(str(tiny_model_dir), device="cpu")


@pytest.fixture
def teacher(tiny_teacher_dir: Path) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_teacher_dir), device="cpu")


@pytest.fixture
def corpus() -> list[str]:
    return list(CORPUS)
