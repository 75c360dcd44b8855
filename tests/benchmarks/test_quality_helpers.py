"""The benchmark code whose mistakes would silently change published numbers.

Test leakage, re-scoring, the Group-P reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import quality  # noqa: E402
from reference_group_p import reference_group_p_pairing  # noqa: E402
from speed_group_p import same_groups, teacher_logits  # noqa: E402


@pytest.mark.parametrize("batch_size", [8, 33, 64])
def test_reference_and_ours_keep_every_candidate_in_its_teacher_group(batch_size):
    torch.manual_seed(batch_size)
    assert same_groups(teacher_logits(batch_size), 0.1)


def test_reference_returns_a_permutation_of_each_row():
    logits = teacher_logits(40)
    sorted_logits, index = reference_group_p_pairing(logits, 0.1)
    assert torch.equal(index.sort(dim=-1).values, torch.arange(logits.size(1)).expand_as(index))
    assert torch.equal(sorted_logits, logits.sort(dim=-1, descending=True).values)


def _write_run(runs: Path, table: str, name: str, scores: dict[str, float]) -> None:
    path = runs / table / name
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = int(name.rsplit("seed", 1)[1].split(".")[0])
    path.write_text(json.dumps({"seed": seed, "scores": scores, "average": sum(scores.values()) / len(scores)}))


def test_a_run_scored_on_fewer_tasks_than_its_table_is_not_done(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "RUNS", tmp_path)
    _write_run(tmp_path, "A", "mse-seed0.json", {"STSBenchmark": 60.0})
    _write_run(tmp_path, "A", "mse-seed1.json", {task: 60.0 for task in quality.STS7})
    assert not quality.is_done("A", "mse", 0)
    assert quality.is_done("A", "mse", 1)
    assert not quality.is_done("A", "mse", 2)


def test_report_uses_only_the_tasks_every_run_has(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "RUNS", tmp_path)
    _write_run(tmp_path, "A", "mse-seed0.json", {"STSBenchmark": 60.0, "SICK-R": 70.0})
    _write_run(tmp_path, "A", "mse-seed1.json", {task: 62.0 for task in quality.STS7})
    rows = quality.collect()["A"]
    tasks = quality.scored_tasks("A", rows)
    assert tasks == ["STSBenchmark", "SICK-R"]
    summary = quality.summarise(rows["mse"], tasks)
    assert summary["n"] == 2
    assert summary["average_mean"] == pytest.approx((65.0 + 62.0) / 2)


@pytest.mark.skipif(not (quality.STS_DIR / "STSBenchmark-train.jsonl").is_file(), reason="shared STS data not present")
def test_table_b_corpus_holds_no_sentence_of_the_evaluation_sets():
    corpus, stats = quality.corpus_b()
    excluded = set()
    for name in ("STSBenchmark-dev.jsonl", "STSBenchmark.jsonl", "SICK-R.jsonl"):
        excluded |= {s.lower() for s in quality._sts_sentences(name)}
    assert corpus and not {s.lower() for s in corpus} & excluded
    assert stats["used"] == len(corpus) == len(set(corpus))


def test_table_b_row_names_give_the_base_row_K_and_p(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "RUNS", tmp_path)
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "p-sweep.json").write_text(json.dumps({"best_p_on_dev": "0.5"}))
    K, p = quality.SETTINGS["K"], quality.SETTINGS["group_p"]
    assert quality.b_row_spec("simcse") == ("simcse", K, None)
    assert quality.b_row_spec("vanilla-kd") == ("vanilla-kd", K, None)
    assert quality.b_row_spec("group-p") == ("group-p", K, p)
    assert quality.b_row_spec("components-K8") == ("components", 8, None)
    assert quality.b_row_spec("distillcse-K4") == ("distillcse", 4, p)
    assert quality.b_row_spec("distillcse-K8-devp") == ("distillcse", 8, 0.5)
    assert quality.b_row_spec("group-p-devp") == ("group-p", K, 0.5)
    assert quality.b_row_spec("group-p-p0.3") == ("group-p", K, 0.3)
    assert quality.run_name("B", "distillcse-K8-devp", 1, 1e-4) == "B/distillcse-K8-p0.5-seed1-lr0.0001"
    assert quality.run_name("B", "group-p", 0, 1e-4) == "B/group-p-seed0-lr0.0001"
    assert quality.split_p("A", "group-p-no-contrastive") == ("group-p-no-contrastive", None)
    for row in set(quality.ROW_LABELS["B"]) - {"initial-student"}:
        quality.b_row_spec(row)  # every trained row of the table parses
    with pytest.raises(ValueError):
        quality.b_row_spec("distill-K8")
