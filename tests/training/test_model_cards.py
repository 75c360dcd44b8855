from __future__ import annotations

from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from distillcse_st.training.model_cards import LANGUAGE, describe, model_name


def _model_dir(tmp_path: Path, name: str, card: str | None) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    if card is not None:
        (directory / "README.md").write_text(card, encoding="utf-8")
    return directory


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ("---\nlicense: apache-2.0\n---\n\n# all-MiniLM-L6-v2\n\ntext\n", "all-MiniLM-L6-v2"),  # an external card
        ("---\ntags:\n- generated_from_trainer\n---\n\n# DistillCSE student of base\n", "round1-distill"),  # a run's
        ("---\ntags:\n- sentence-transformers\n---\n\n# SentenceTransformer\n", "round1-distill"),  # ST's default
        ("no title\n", "round1-distill"),
        ("---\nlicense: [mit\n---\n# broken YAML\n", "round1-distill"),
        (None, "round1-distill"),
    ],
)
def test_model_name(tmp_path: Path, card: str | None, expected: str) -> None:
    assert model_name(_model_dir(tmp_path, "round1-distill", card)) == expected


def test_describe(student: SentenceTransformer, tmp_path: Path) -> None:
    describe(student, "A title", _model_dir(tmp_path, "base", "---\nlicense: mit\nlanguage: [de, fr]\n---\n# base\n"))
    data = student.model_card_data
    assert (data.model_name, data.license, data.language) == ("A title", "mit", ["de", "fr"])
    describe(student, "Another", _model_dir(tmp_path, "bare", None))
    assert student.model_card_data.language == [LANGUAGE]
