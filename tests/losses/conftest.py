"""Fixtures of the loss tests: one torch thread, and a teacher sharing the student's tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from tests.helpers import load


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread for these tiny models: two threads on a shared 2-core machine mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_vocab_teacher(tiny_model_dir: Path) -> SentenceTransformer:
    """A teacher with the student's very tokenizer (given the student's tokens as they are), other weights.

    (conftest's ``teacher`` has a vocabulary of its own, so it re-tokenizes decoded texts.)
    """
    model = load(tiny_model_dir)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model
