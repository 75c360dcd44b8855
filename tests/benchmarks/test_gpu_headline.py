"""The GPU headline script's small helpers: batches, the time budget, where each lr comes from, the queue."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_headline  # noqa: E402
from quality import rows as quality_rows  # noqa: E402


def test_batches_cover_each_epoch_once_and_are_seeded():
    batches = gpu_headline.batches(10, 4, 5, seed=0)
    assert [len(b) for b in batches] == [4] * 5
    first_epoch = batches[0] + batches[1]
    assert len(set(first_epoch)) == 8  # no repeat inside an epoch (its last partial batch dropped)
    assert batches == gpu_headline.batches(10, 4, 5, seed=0)
    assert batches != gpu_headline.batches(10, 4, 5, seed=1)


@pytest.mark.parametrize(("elapsed", "durations", "fits"), [(0, [], True), (300, [100, 120], True),
                                                          (400, [100], False), (449, [], True)])
def test_a_run_starts_only_if_the_mean_run_still_fits_the_budget(elapsed, durations, fits):
    assert gpu_headline.fits(elapsed, durations, 450) is fits


def test_lrs_come_from_each_tables_dev_sweep_where_it_chose(tmp_path):
    long, short = tmp_path / "long", tmp_path / "short"
    for runs, table, best in ((long, "A", {"embed-distill-cosine": 0.0008, "embed-distill+group-p": None}),
                              (short, "C", {"embed-distill+group-p": 5e-05})):
        (runs / table).mkdir(parents=True)
        (runs / table / "lr-sweep.json").write_text(json.dumps({"best_lr": best}))
    lrs = gpu_headline.chosen_lrs({"A": long, "B": long, "C": short})  # B has no sweep in its folder
    assert lrs == {"A": {"embed-distill-cosine": 0.0008}, "C": {"embed-distill+group-p": 5e-05}}
    assert gpu_headline.job_lr(gpu_headline.Job("A", "mse", 0, 4e-4), lrs)[0] == 0.0008  # mse borrows embed's
    assert gpu_headline.job_lr(gpu_headline.Job("A", "embed-distill+group-p", 0, 4e-4), lrs)[0] == 4e-4
    assert gpu_headline.job_lr(gpu_headline.Job("C", "embed-distill+group-p", 0, 1e-4), lrs)[0] == 5e-05
    assert gpu_headline.job_lr(gpu_headline.Job("C", "embed-distill-cosine", 0, 1e-4), lrs)[0] == 1e-4  # A's is A's
    assert gpu_headline.job_lr(gpu_headline.Job("B", "simcse", 0, 1e-4), lrs)[0] == 1e-4
    assert gpu_headline.job_lr(gpu_headline.Job("A", "teacher", None), lrs) == (None, "untrained")


def test_p_comes_from_the_first_finished_p_sweep(tmp_path, monkeypatch):
    long, short = tmp_path / "long", tmp_path / "short"
    for runs, best in ((long, None), (short, 0.5)):
        (runs / "B").mkdir(parents=True)
        (runs / "B" / "p-sweep.json").write_text(json.dumps({"best_p_on_dev": best}))
    monkeypatch.setattr(gpu_headline, "P_SWEEP_RUNS", (long, short))
    assert gpu_headline.sweep_p("B") == 0.5  # the long sweep has not finished
    (long / "B" / "p-sweep.json").write_text(json.dumps({"best_p_on_dev": 0.3}))
    assert gpu_headline.sweep_p("B") == 0.3
    assert gpu_headline.job_spec(gpu_headline.Job("B", "group-p-devp", 0, 1e-4))[1].group_p == 0.3
    assert gpu_headline.sweep_p("A") is None


def test_every_queued_job_is_a_row_of_its_table_and_b_teachers_come_first():
    for job in gpu_headline.QUEUE:
        assert job.row in quality_rows.ROWS[job.table]
        gpu_headline.job_spec(job)
        assert (job.lr is None) == (job.seed is None)
    rows = [(job.table, job.row) for job in gpu_headline.QUEUE]
    assert rows.index(("B", "simcse")) < rows.index(("B", "group-p-devp"))
