"""The one model loader of training and evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillcse_st.errors import InputError
from distillcse_st.models import check_model_dir, load_model


def test_loads_a_sentence_transformer_or_a_transformers_checkpoint(tiny_model_dir: Path) -> None:
    saved = load_model(tiny_model_dir, "student", max_seq_length=16)
    assert saved.max_seq_length == 16
    raw = load_model(tiny_model_dir.parent / "raw", "student")  # config.json only: ST adds mean pooling
    assert raw.get_sentence_embedding_dimension() == saved.get_sentence_embedding_dimension()
    assert check_model_dir(tiny_model_dir) == tiny_model_dir.resolve()


def test_errors_name_the_role(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="teacher directory not found"):
        load_model(tmp_path / "absent", "teacher")
    with pytest.raises(InputError, match="student directory is not a SentenceTransformer or transformers model"):
        load_model(tmp_path, "student")
