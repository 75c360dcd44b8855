"""The STS-B dev ``EmbeddingSimilarityEvaluator`` factory."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer

from distillcse_st.errors import InputError
from distillcse_st.evaluation import dev_evaluator, dev_file, metric_for_best_model, sts_dev_evaluator
from tests.evaluation.conftest import PAIRS, write_jsonl


def test_score_is_cosine_spearman(tiny_model_dir: Path, sts_dir: Path) -> None:
    evaluator = sts_dev_evaluator(sts_dir / "STSBenchmark-dev.jsonl", name="dev")
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    metrics = evaluator(model)
    a = model.encode([p[0] for p in PAIRS[:8]])
    b = model.encode([p[1] for p in PAIRS[:8]])
    cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert evaluator.primary_metric == "dev_spearman_cosine"
    assert metrics["dev_spearman_cosine"] == pytest.approx(spearmanr([p[2] for p in PAIRS[:8]], cosines)[0], abs=1e-6)
    assert metric_for_best_model("dev") == "eval_" + evaluator.primary_metric


def test_path_resolution(sts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dev_evaluator.DEV_FILE_ENV, raising=False)
    assert dev_file(sts_dir) == sts_dir / "STSBenchmark-dev.jsonl"
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    plain = (sts_dir / "STSBenchmark-dev.jsonl").read_bytes()
    (gz_dir / "STSBenchmark-dev.jsonl.gz").write_bytes(gzip.compress(plain))
    assert dev_file(gz_dir) == gz_dir / "STSBenchmark-dev.jsonl.gz"
    assert len(sts_dev_evaluator(gz_dir).scores) == 8

    other = write_jsonl(tmp_path / "other.jsonl", PAIRS[:5])
    monkeypatch.setenv(dev_evaluator.DEV_FILE_ENV, str(other))
    assert dev_file() == other and len(sts_dev_evaluator().sentences1) == 5

    monkeypatch.delenv(dev_evaluator.DEV_FILE_ENV)
    monkeypatch.setattr(dev_evaluator, "PACKAGED_DEV_FILE", gz_dir / "STSBenchmark-dev.jsonl.gz")
    assert dev_file() == gz_dir / "STSBenchmark-dev.jsonl.gz"
    monkeypatch.setattr(dev_evaluator, "PACKAGED_DEV_FILE", tmp_path / "absent.jsonl.gz")
    with pytest.raises(InputError, match="no STS dev file given"):
        dev_file()


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        sts_dev_evaluator(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="not found"):
        sts_dev_evaluator(tmp_path)  # a directory without STSBenchmark-dev.jsonl
    bad = write_jsonl(tmp_path / "bad.jsonl", PAIRS[:1])
    bad.write_text(bad.read_text() + '{"sentence1": "x"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: 'sentence2' must be a string"):
        sts_dev_evaluator(bad)
