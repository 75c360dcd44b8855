"""Local MTEB STS tasks: jsonl reading/validation, task resolution, and scores equal to scipy's."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import mteb
import numpy as np
import pytest
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer

from distillcse_st.errors import InputError
from distillcse_st.evaluation import STS7, evaluate_sts, format_table, read_sts_jsonl, resolve_tasks
from tests.evaluation.conftest import PAIRS, write_jsonl


def cosine_spearman(model_dir: Path, pairs) -> float:
    model = SentenceTransformer(str(model_dir), device="cpu")
    a = model.encode([p[0] for p in pairs], convert_to_numpy=True)
    b = model.encode([p[1] for p in pairs], convert_to_numpy=True)
    cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(spearmanr([p[2] for p in pairs], cosines)[0])


def test_read_jsonl_and_gz(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", PAIRS[:3])
    path.write_text(path.read_text() + "\n   \n", encoding="utf-8")  # trailing blank lines are fine
    data = read_sts_jsonl(path)
    assert data == {"sentence1": [p[0] for p in PAIRS[:3]], "sentence2": [p[1] for p in PAIRS[:3]],
                    "score": [p[2] for p in PAIRS[:3]]}
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_sts_jsonl(gz) == data


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"sentence1": "a", "score": 1}', "'sentence2' must be a string"),
        ('{"sentence1": "a", "sentence2": "b", "score": "high"}', "'score' must be a finite number"),
        ('{"sentence1": "a", "sentence2": "b", "score": NaN}', "'score' must be a finite number"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", PAIRS[:2])
    path.write_text(path.read_text() + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message) as error:
        read_sts_jsonl(path)
    assert f"{path}:3:" in str(error.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_sts_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no sentence pairs"):
        read_sts_jsonl(tmp_path / "empty.jsonl")


def test_sts7_tasks_keep_mteb_metadata(tmp_path: Path) -> None:
    for name in STS7:
        write_jsonl(tmp_path / f"{name}.jsonl", PAIRS[:2])
    tasks = resolve_tasks("sts7", tmp_path)
    assert [task.metadata.name for task in tasks] == list(STS7)
    for task in tasks:
        registered = mteb.get_task(task.metadata.name)
        assert isinstance(task, type(registered))
        assert task.metadata == registered.metadata
        assert (task.min_score, task.max_score) == (0, 5)
        assert task.metadata.main_score == "cosine_spearman" and task.eval_splits == ["test"]


def test_resolution_errors(sts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="unknown task 'STS99'"):
        resolve_tasks("STS12,STS99", sts_dir)
    with pytest.raises(InputError, match="not an STS task"):
        resolve_tasks("Banking77Classification", sts_dir)
    with pytest.raises(InputError, match=r"STS13: data file not found: .*STS13\.jsonl"):
        resolve_tasks("STS13", sts_dir)
    with pytest.raises(InputError, match="STS data directory not found"):
        resolve_tasks("STS12", tmp_path / "missing")
    monkeypatch.delenv("DISTILLCSE_STS_DIR", raising=False)
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="hub is offline"):
        resolve_tasks("STS12")
    monkeypatch.setenv("DISTILLCSE_STS_DIR", str(sts_dir))
    assert [task.metadata.name for task in resolve_tasks("STS12")] == ["STS12"]


def test_hub_tasks_by_name_when_online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTILLCSE_STS_DIR", raising=False)
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", False)
    (task,) = resolve_tasks("SICK-R")
    assert type(task) is type(mteb.get_task("SICK-R"))


def test_evaluate_matches_scipy_and_writes_mteb_results(tiny_model_dir: Path, sts_dir: Path, tmp_path: Path) -> None:
    summary = evaluate_sts(tiny_model_dir, "STS12,STSBenchmark", data_dir=sts_dir, output_dir=tmp_path / "out",
                           show_progress_bar=False)
    assert summary["scores"]["STS12"] == pytest.approx(cosine_spearman(tiny_model_dir, PAIRS), abs=1e-6)
    assert summary["scores"]["STSBenchmark"] == pytest.approx(
        cosine_spearman(tiny_model_dir, PAIRS[::-1][:10]), abs=1e-6)
    assert summary["average"] == pytest.approx(np.mean(list(summary["scores"].values())))

    result_dir = tmp_path / "out" / "results" / "local__model" / "no_revision_available"
    result = json.loads((result_dir / "STS12.json").read_text())
    assert result["task_name"] == "STS12"
    assert result["dataset_revision"] == mteb.get_task("STS12").metadata.revision
    assert result["scores"]["test"][0]["main_score"] == pytest.approx(summary["scores"]["STS12"], abs=1e-6)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["scores"] == summary["scores"]


def test_format_table() -> None:
    table = format_table({"STS12": 0.7237, "SICK-R": 0.5})
    lines = table.splitlines()
    assert lines[0].startswith("Task") and "72.37" in lines[2] and "50.00" in lines[3]
    assert lines[-1].split() == ["Average", "61.19"]
