"""The benchmark code whose mistakes would silently change published numbers.

Test leakage, re-scoring, row names, the lr grid rule, the Group-P reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from quality import queue as quality_queue  # noqa: E402
from quality import report as quality_report  # noqa: E402
from quality import rows as quality_rows  # noqa: E402
from quality import runner as quality_runner  # noqa: E402
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


def _settings(tmp_path: Path, monkeypatch, **kwargs) -> quality_rows.Settings:
    monkeypatch.setattr(quality_rows, "RESULTS", tmp_path)
    return quality_rows.Settings(**kwargs)


def _write_run(settings: quality_rows.Settings, table: str, name: str, scores: dict[str, float]) -> None:
    path = settings.runs / table / name
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = int(name.rsplit("seed", 1)[1].split(".")[0])
    path.write_text(json.dumps({"seed": seed, "scores": scores, "average": sum(scores.values()) / len(scores)}))


def test_settings_name_each_benchmark_and_keep_the_150_step_layout(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch)
    assert settings.runs == tmp_path / "quality_runs-steps150-K2" and settings.eval_steps == 37
    assert _settings(tmp_path, monkeypatch, lr=4e-4).stem == "quality-steps150-K2-lr0.0004"
    long = _settings(tmp_path, monkeypatch, steps=1000, lr=None)
    assert long.tag == "steps1000-K2-lrdev" and long.eval_steps == 125
    with pytest.raises(AttributeError):
        settings.steps = 10  # frozen: one benchmark, one set of settings


def test_a_run_scored_on_fewer_tasks_than_its_table_is_not_done(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch)
    _write_run(settings, "A", "mse-seed0.json", {"STSBenchmark": 60.0})
    _write_run(settings, "A", "mse-seed1.json", {task: 60.0 for task in quality_rows.STS7})
    assert not quality_runner.is_done(settings, "A", "mse", 0)
    assert quality_runner.is_done(settings, "A", "mse", 1)
    assert not quality_runner.is_done(settings, "A", "mse", 2)


def test_report_uses_only_the_tasks_every_run_has(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch)
    _write_run(settings, "A", "mse-seed0.json", {"STSBenchmark": 60.0, "SICK-R": 70.0})
    _write_run(settings, "A", "mse-seed1.json", {task: 62.0 for task in quality_rows.STS7})
    rows = quality_report.collect(settings)["A"]
    tasks = quality_report.scored_tasks("A", rows)
    assert tasks == ["STSBenchmark", "SICK-R"]
    summary = quality_report.summarise(rows["mse"], tasks)
    assert summary["n"] == 2
    assert summary["average_mean"] == pytest.approx((65.0 + 62.0) / 2)


def test_plots_draw_dev_curves_only_once_a_row_has_trained(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch)
    monkeypatch.setattr(quality_report, "RESULTS", tmp_path)
    _write_run(settings, "A", "initial-student-seed0.json", {task: 58.0 for task in quality_rows.STS7})
    quality_report.plots(settings, quality_report.collect(settings))
    assert (tmp_path / f"{settings.stem}_A_bars.png").is_file()
    assert not (tmp_path / f"{settings.stem}_A_dev_curves.png").exists()  # an empty plot is not written
    run = {"seed": 0, "scores": {task: 60.0 for task in quality_rows.STS7}, "average": 60.0,
           "train": {"lr": 1e-4, "best_dev": 70.0, "dev_history": [{"step": 37, "dev": 70.0}]}}
    (settings.runs / "A" / "mse-seed0.json").write_text(json.dumps(run))
    quality_report.plots(settings, quality_report.collect(settings))
    assert (tmp_path / f"{settings.stem}_A_dev_curves.png").is_file()


@pytest.mark.skipif(not (quality_rows.STS_DIR / "STSBenchmark-train.jsonl").is_file(),
                    reason="shared STS data not present")
def test_table_b_corpus_holds_no_sentence_of_the_evaluation_sets():
    corpus, stats = quality_rows.corpus_stsb(quality_rows.Settings())
    excluded = set()
    for name in ("STSBenchmark-dev.jsonl", "STSBenchmark.jsonl", "SICK-R.jsonl"):
        excluded |= {s.lower() for s in quality_rows.sts_sentences(name)}
    assert corpus and not {s.lower() for s in corpus} & excluded
    assert stats["used"] == len(corpus) == len(set(corpus))


def test_row_names_give_the_base_row_K_and_p():
    K, p = 2, quality_rows.TABLE_P

    def spec(row: str, table: str = "B") -> tuple[str, int, float | None]:
        base, row_at_p, k = quality_rows.row_spec(table, row, K, best_p=0.5)
        return base, k, row_at_p.group_p

    assert spec("simcse") == ("simcse", K, None)
    assert spec("vanilla-kd") == ("vanilla-kd", K, None)
    assert spec("group-p") == ("group-p", K, p)
    assert spec("components-K8") == ("components", 8, None)
    assert spec("distillcse-K4") == ("distillcse", 4, p)
    assert spec("distillcse-K8-devp") == ("distillcse", 8, 0.5)
    assert spec("group-p-devp") == ("group-p", K, 0.5)
    assert spec("group-p-p0.3") == ("group-p", K, 0.3)
    assert spec("group-p-no-contrastive", "A") == ("group-p-no-contrastive", K, p)
    assert spec("embed-distill+vanilla-kd", "A") == ("embed-distill+vanilla-kd", K, None)
    assert quality_rows.run_name("B", "distillcse-K8-devp", 1, 1e-4, 0.5) == "B/distillcse-K8-p0.5-seed1-lr0.0001"
    assert quality_rows.run_name("B", "group-p", 0, 1e-4) == "B/group-p-seed0-lr0.0001"
    for table, rows in quality_rows.ROWS.items():
        for row in rows:
            quality_rows.row_spec(table, row, K, best_p=0.5, knobs=quality_rows.Knobs(0.3, 1.0))  # every row parses
    with pytest.raises(ValueError):
        spec("distill-K8")
    with pytest.raises(ValueError):
        quality_rows.row_spec("B", "group-p-devp", K)  # no p sweep yet


def test_every_trained_row_takes_its_lr_from_a_swept_row():
    for table, rows in quality_rows.ROWS.items():
        for row, spec in rows.items():
            if spec.loss:
                assert (spec.lr_row or row) in quality_rows.SWEEP_ROWS[table], (table, row)


@pytest.mark.parametrize(
    ("devs", "grid_end", "best"),
    [
        ({}, (4e-4, 1.6e-3), None),
        ({"0.0004": 72, "0.0008": 74, "0.0016": 75}, (4e-4, 3.2e-3), None),  # best at the top: extend
        ({"0.0004": 76, "0.0008": 72, "0.0016": 71}, (2e-4, 1.6e-3), None),  # best at the bottom
        ({"0.0004": 70, "0.0008": 74, "0.0016": 71}, (4e-4, 1.6e-3), "0.0008"),  # interior: done
        ({"0.0002": 70, "0.0004": 74, "0.0008": 72, "0.0016": 71}, (2e-4, 1.6e-3), "0.0004"),  # an extended grid
    ],
)
def test_the_lr_grid_grows_until_its_best_point_is_interior(devs, grid_end, best):
    grid = quality_runner.lr_grid("A", devs)
    assert (grid[0], grid[-1]) == pytest.approx(grid_end)
    assert quality_runner.chosen_lr("A", devs) == (best and (best, "interior"))


def test_each_table_starts_its_lr_grid_at_its_own_three_points():
    assert set(quality_rows.LR_GRID) == set(quality_rows.ROWS)
    for table, start in quality_rows.LR_GRID.items():
        assert quality_runner.lr_grid(table, {}) == pytest.approx(sorted(start))
    # a SimCSE-style sweep whose best sits at table B's lowest point extends downwards, not from table A's grid
    devs = {"2.5e-05": 75.0, "5e-05": 74.0, "0.0001": 73.0}
    assert quality_runner.lr_grid("B", devs)[0] == pytest.approx(1.25e-5)
    assert quality_runner.chosen_lr("B", devs) is None


def test_a_sweep_whose_lowest_lr_is_best_extends_down_to_the_floor_even_under_the_untrained_start():
    # every point under the start (86.6) in table E2, yet a smaller lr ended above it: the grid keeps going down
    devs = {"2.5e-05": 86.53, "5e-05": 86.17, "0.0001": 85.75}
    assert quality_runner.lr_grid("D", devs)[0] == pytest.approx(1.25e-5)
    assert quality_runner.chosen_lr("D", devs) is None
    assert quality_runner.chosen_lr("D", devs | {"1.25e-05": 86.68, "6.25e-06": 86.66}) == ("1.25e-05", "interior")
    # still rising at the floor: the lowest point, said so
    falling = {f"{2.5e-5 / 2**k:g}": 80.0 + k for k in range(-2, 5)}  # 1e-4 ... 1.5625e-6
    assert quality_runner.lr_grid("D", falling)[0] == pytest.approx(1.5625e-6)  # 7.8e-7 is under the floor
    lr, why = quality_runner.chosen_lr("D", falling)
    assert lr == "1.5625e-06" and f"{quality_rows.LR_FLOOR:g}" in why
    rising = {"2.5e-05": 83.0, "5e-05": 84.0, "0.0001": 85.0}  # a best at the top edge always extends
    assert quality_runner.lr_grid("D", rising)[-1] == pytest.approx(2e-4)
    assert quality_runner.chosen_lr("D", rising) is None


def test_the_report_says_why_a_lowest_lr_was_chosen(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch, steps=600, lr=None)
    sweep = {"rows": {"simcse": {"2.5e-05": 85.0, "5e-05": 84.0}, "group-p": {"0.0004": 70.0}},
             "best_lr": {"simcse": 2.5e-5, "group-p": None},
             "chosen_because": {"simcse": "lowest lr: the grid stops at 1e-06", "group-p": None}}
    text = "\n".join(quality_report.lr_sweep_lines(settings, sweep))
    assert "simcse 2.5e-05 (lowest lr: the grid stops at 1e-06)" in text
    assert "group-p not yet" in text


def test_dev_curves_leave_step_zero_to_the_start_row_and_average_runs_at_the_same_steps():
    def run(points):
        return {"train": {"dev_history": [{"step": step, "dev": dev} for step, dev in points]}}

    runs = [run([(0, 86.6), (125, 84.0), (250, 85.0)]), run([(125, 86.0), (250, 83.0)]), {"train": None}]
    assert quality_report.mean_dev_curve(runs) == ([125, 250], [85.0, 84.0], 2)
    assert quality_report.mean_dev_curve([{"train": None}]) is None


def test_the_queue_sweeps_every_lr_family_and_table_b_sweeps_simcse_before_its_students():
    for table, queue in quality_queue.QUEUE.items():
        swept = [row for step, rows, _ in queue if step == "sweep" for row in rows]
        assert sorted(swept) == sorted(quality_rows.SWEEP_ROWS[table])
    b_sweeps = [rows for step, rows, _ in quality_queue.QUEUE["B"] if step == "sweep"]
    assert b_sweeps[0] == ("simcse",)


def test_every_queued_row_runs_three_seeds_once_each():
    for table, queue in quality_queue.QUEUE.items():
        runs = [(row, seed) for step, rows, seeds in queue if step == "rows" for seed in seeds for row in rows]
        assert len(runs) == len(set(runs)), table
        for row in {row for row, _ in runs}:
            assert sorted(seed for name, seed in runs if name == row) == [0, 1, 2], (table, row)


def test_listed_runs_name_trained_rows_of_their_table_with_a_seed():
    assert quality_queue.parse_runs("B", ["simcse:2", "distillcse-devp:0"]) == [("simcse", 2), ("distillcse-devp", 0)]
    for bad in ("initial-student:0", "simcse", "simcse:x", "embed-distill-cosine:1"):
        with pytest.raises(ValueError, match="ROW:SEED"):
            quality_queue.parse_runs("B", [bad])


def test_every_untrained_row_names_its_model_except_the_report_only_one():
    untrained = {(table, row) for table, rows in quality_rows.ROWS.items() for row, spec in rows.items()
                 if spec.loss is None}
    assert untrained - set(quality_rows.EVAL_MODELS) == {("A", "group-p+embed-distill")}
    assert set(quality_rows.EVAL_MODELS.values()) == set(quality_runner.MODELS)


def test_every_trained_row_builds_its_loss_with_its_own_distillation_weight(tiny_model_dir, tiny_teacher_dir):
    from sentence_transformers import SentenceTransformer

    from distillcse_st.losses import InBatchDistillLoss

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    for table, rows in quality_rows.ROWS.items():
        for name, row in rows.items():
            if row.loss is None:
                continue
            loss = quality_rows.build_loss(row, model, teacher=teacher)
            if isinstance(loss, dict):  # ST's multi-objective training: ours only where the pairs' kind says so
                ours = [part for part in loss.values() if isinstance(part, InBatchDistillLoss)]
                assert len(ours) == ("+kd" in row.loss), (table, name)
                assert all(part.get_config_dict()["distillation_weight"] == row.distillation_weight for part in ours)
                continue
            config = loss.get_config_dict()
            if row.loss in ("mse", "embed-distill", "simcse") or "+" not in row.loss and table.startswith("E"):
                # no in-batch term (ST's losses), or SimCSE's weight 0
                assert config.get("distillation_weight", 0.0) == 0.0, (table, name)
            else:
                assert config["distillation_weight"] == row.distillation_weight, (table, name)
    balanced = quality_rows.ROWS["A"]["embed-distill+group-p-balanced"]
    assert balanced.distillation_weight == 0.05 and balanced.lr_row == "embed-distill-cosine"


def test_pca_reduction_keeps_the_geometry_of_embeddings_that_span_fewer_dimensions_than_its_width():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(8, 3)))[0].T  # 3 orthonormal directions in 8-d
    array = (rng.normal(size=(50, 3)) @ basis).astype(np.float32)
    reduced = quality_runner.pca_reduced(array, 3, fit_rows=40)
    assert reduced.shape == (50, 3) and reduced.dtype == np.float32
    np.testing.assert_allclose(reduced @ reduced.T, array @ array.T, atol=1e-4)  # rows 40-49 were not fitted
    assert quality_runner.pca_reduced(array, 2).shape == (50, 2)


def _stop_a_sweep_midway(monkeypatch, fake_run_row, sweep) -> None:
    """Run ``sweep`` over ``fake_run_row``, which ends the session once (KeyboardInterrupt) midway."""
    monkeypatch.setattr(quality_runner, "run_row", fake_run_row)
    monkeypatch.setattr(quality_runner, "sweep_lr", lambda *args: 1e-4)
    monkeypatch.setattr(quality_runner, "machine_info", dict)
    with pytest.raises(KeyboardInterrupt):
        sweep()


@pytest.mark.parametrize(
    ("means", "grid", "best"),
    [
        ({}, (0.1, 0.3, 0.5, 0.7), None),
        ({"0.1": 70, "0.3": 72, "0.5": 74, "0.7": 73}, (0.1, 0.3, 0.5, 0.7), "0.5"),  # interior: done
        ({"0.1": 70, "0.3": 72, "0.5": 73, "0.7": 74}, (0.1, 0.3, 0.5, 0.7, 1.0), None),  # top edge: extend
        ({"0.1": 76, "0.3": 72, "0.5": 73, "0.7": 74}, (0.05, 0.1, 0.3, 0.5, 0.7), None),  # bottom edge: extend
        ({"0.1": 70, "0.3": 72, "0.5": 73, "0.7": 74, "1": 75}, (0.1, 0.3, 0.5, 0.7, 1.0), "1"),  # the ladder's end
    ],
)
def test_the_p_grid_grows_along_the_ladder_until_its_best_mean_is_interior(means, grid, best):
    assert quality_runner.p_grid(means) == pytest.approx(list(grid))
    assert quality_runner.chosen_p(means) == best


def test_the_p_sweep_runs_every_seed_of_a_point_averages_them_and_resumes(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch, steps=600, lr=None)
    dev_of = {0.1: 70.0, 0.3: 74.0, 0.5: 76.0, 0.7: 75.0}  # seed s adds s: means 71, 75, 77, 76
    calls: list[tuple[str, int]] = []

    def fake_run_row(settings, table, row, seed, train_only):
        calls.append((row, seed))
        if len(calls) == 5:
            raise KeyboardInterrupt  # the session ends midway
        return {"best_dev": dev_of[quality_rows.split_p(row)[1]] + seed}

    _stop_a_sweep_midway(monkeypatch, fake_run_row, lambda: quality_runner.p_sweep(settings, "B"))
    assert quality_rows.read_best_p(settings.runs, "B") is None  # unfinished: no row may use it yet
    quality_runner.p_sweep(settings, "B")
    assert len(calls) == 4 * 3 + 1 and len(set(calls)) == 4 * 3  # only the interrupted run is repeated
    assert calls[:3] == [("group-p-p0.5", 0), ("group-p-p0.5", 1), ("group-p-p0.5", 2)]  # a point's seeds in a row
    sweep = json.loads((settings.runs / "B" / "p-sweep.json").read_text())
    assert sweep["group-p"] == {"0.5": 77.0, "0.3": 75.0, "0.7": 76.0, "0.1": 71.0}
    assert quality_rows.read_best_p(settings.runs, "B") == 0.5


def test_a_dev_row_takes_the_knob_sweeps_choice_and_shares_its_base_rows_run_where_nothing_changes():
    Knobs = quality_rows.Knobs
    base, spec, _ = quality_rows.row_spec("E1-minilm", "mnrl+kd-dev", 2, knobs=Knobs(0.3, 3.0))
    assert (base, spec.group_p, spec.distillation_weight, spec.loss) == ("mnrl+kd", 0.3, 3.0, "mnrl+kd")
    name = quality_rows.run_name
    assert name("E1-minilm", "mnrl+kd-dev", 1, 1e-4, knobs=Knobs(0.3, 3.0)) == (
        "E1-minilm/mnrl+kd-p0.3-w3-seed1-lr0.0001")
    assert name("E1-minilm", "mnrl+kd-dev", 0, 1e-4, knobs=Knobs(None, 1.0)) == name("E1-minilm", "mnrl+kd", 0, 1e-4)
    with pytest.raises(ValueError, match="knob sweep"):
        quality_rows.row_spec("E1-minilm", "mnrl+kd-dev", 2)


def test_the_knob_sweep_tries_every_p_then_grows_the_weight_grid_and_resumes(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch, steps=160, lr=None)
    dev_of_p = {None: 70.0, 0.1: 71.0, 0.3: 72.0, 0.5: 71.5}
    dev_of_weight = {0.3: 71.0, 1.0: 72.0, 3.0: 73.0, 10.0: 72.5}  # best at the top edge first: 10 is added
    calls = []

    def fake_run_row(settings, table, row, seed, lr, train_only, knobs):
        calls.append(knobs)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the session ends midway
        if knobs.distillation_weight == 1.0:
            return {"best_dev": dev_of_p[knobs.group_p]}
        return {"best_dev": dev_of_weight[knobs.distillation_weight]}

    _stop_a_sweep_midway(monkeypatch, fake_run_row, lambda: quality_runner.knob_sweep(settings, "E1-minilm"))
    assert quality_rows.read_knobs(settings.runs, "E1-minilm") is None  # unfinished: no row may use it yet
    quality_runner.knob_sweep(settings, "E1-minilm")
    Knobs = quality_rows.Knobs
    assert calls[2:] == [Knobs(0.1, 1.0), Knobs(0.3, 1.0), Knobs(0.5, 1.0), Knobs(0.3, 0.3), Knobs(0.3, 3.0),
                         Knobs(0.3, 10.0)]  # only the interrupted run is repeated; weight 1 is p = 0.3's run
    assert quality_rows.read_knobs(settings.runs, "E1-minilm") == Knobs(0.3, 3.0)
    finished = (settings.runs / "E1-minilm" / "knob-sweep.json").read_bytes()
    quality_runner.knob_sweep(settings, "E1-minilm")  # the queue passes it again: nothing to run or rewrite
    assert len(calls) == 8 and (settings.runs / "E1-minilm" / "knob-sweep.json").read_bytes() == finished
    lines = "\n".join(quality_report.knob_sweep_lines(json.loads((settings.runs / "E1-minilm" /
                                                                  "knob-sweep.json").read_text())))
    assert "| dev | 70.00 | 71.00 | 72.00 | 71.50 |" in lines
    assert "Chosen: group_p 0.3, distillation_weight 3." in lines
    # the lr sweep grown since (another lr for vanilla KD): the scores of the old lr are not reused
    monkeypatch.setattr(quality_runner, "sweep_lr", lambda *args: 5e-5)
    quality_runner.knob_sweep(settings, "E1-minilm")
    assert calls[8:] == [calls[0], *calls[2:8]]
    assert json.loads((settings.runs / "E1-minilm" / "knob-sweep.json").read_text())["lr"] == 5e-5


def test_tables_are_letters_or_comma_separated_names():
    assert quality_queue.parse_tables("AC") == ["A", "C"] and quality_queue.parse_tables("b") == ["B"]
    assert quality_queue.parse_tables("E1-minilm,E2-self,A") == ["E1-minilm", "E2-self", "A"]
    for bad in ("", "AX", "E1"):
        with pytest.raises(ValueError, match="--tables"):
            quality_queue.parse_tables(bad)


def test_a_second_process_reaching_a_run_being_trained_waits_for_it(tmp_path):
    import threading

    model_dir = tmp_path / "models" / "E1-minilm" / "mnrl-seed1-lr0.0004"
    first_holds, release, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with quality_runner.run_lock(model_dir):
            first_holds.set()
            release.wait()
            order.append("first done")

    def second() -> None:
        with quality_runner.run_lock(model_dir):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    first_holds.wait()
    threads[1].start()
    threads[1].join(timeout=0.5)
    assert threads[1].is_alive() and order == []  # flock: each open of the lock file is its own holder
    release.set()
    for thread in threads:
        thread.join()
    assert order == ["first done", "second in"]


def test_a_dev_row_scored_with_knobs_the_grown_sweep_no_longer_chooses_is_redone(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch, steps=160, lr=None)
    table_dir = settings.runs / "E1-minilm"
    table_dir.mkdir(parents=True)
    sweep = table_dir / "knob-sweep.json"
    scores = {task: 70.0 for task in quality_rows.STS7}
    run = {"scores": scores, "train": {"group_p": None, "distillation_weight": 30.0, "lr": 1e-4}}
    (table_dir / "mnrl+kd-dev-seed0.json").write_text(json.dumps(run))
    (table_dir / "mnrl-seed0.json").write_text(json.dumps(run))
    (table_dir / "lr-sweep.json").write_text(json.dumps({"best_lr": {"mnrl": 1e-4, "mnrl+kd": 1e-4}}))
    sweep.write_text(json.dumps({"best": {"group_p": None, "distillation_weight": 30.0}}))
    assert quality_runner.is_done(settings, "E1-minilm", "mnrl+kd-dev", 0)
    sweep.write_text(json.dumps({"best": {"group_p": None, "distillation_weight": 100.0}}))  # the ladder grew
    assert not quality_runner.is_done(settings, "E1-minilm", "mnrl+kd-dev", 0)
    assert quality_runner.is_done(settings, "E1-minilm", "mnrl", 0)  # rows without knobs do not depend on it


def test_a_row_trained_at_an_lr_its_grown_sweep_no_longer_chooses_is_redone(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch, steps=160, lr=None)
    table_dir = settings.runs / "E2-mpnet"
    table_dir.mkdir(parents=True)
    run = {"scores": {task: 78.0 for task in quality_rows.STS7}, "train": {"lr": 2.5e-5}}
    (table_dir / "mnrl-seed0.json").write_text(json.dumps(run))
    (table_dir / "initial-student.json").write_text(json.dumps(run | {"train": None}))
    sweep = table_dir / "lr-sweep.json"
    sweep.write_text(json.dumps({"best_lr": {"mnrl": 2.5e-5}}))
    assert quality_runner.is_done(settings, "E2-mpnet", "mnrl", 0)
    assert set(quality_report.collect(settings)["E2-mpnet"]) == {"mnrl", "initial-student"}
    sweep.write_text(json.dumps({"best_lr": {"mnrl": 1.25e-5}}))  # the grid went down past the start
    assert not quality_runner.is_done(settings, "E2-mpnet", "mnrl", 0)
    assert quality_runner.is_done(settings, "E2-mpnet", "initial-student", None)  # untrained: no lr
    assert set(quality_report.collect(settings)["E2-mpnet"]) == {"initial-student"}  # the report waits for the redo
    sweep.write_text(json.dumps({"best_lr": {"mnrl": None}}))  # growing: no choice yet
    assert not quality_runner.is_done(settings, "E2-mpnet", "mnrl", 0)


def test_the_report_says_when_the_chosen_weight_is_the_ladders_top():
    top = quality_rows.W_LADDER[-1]
    sweep = {"row": "mnrl+kd-dev", "seed": 0, "lr": 4e-4, "group_p": {"none": 80.0},
             "distillation_weight": {"1": 80.0, f"{top:g}": 81.0}}
    chosen = [line for line in quality_report.knob_sweep_lines(
        sweep | {"best": {"group_p": None, "distillation_weight": top}}) if line.startswith("Chosen")]
    assert "the ladder's top" in chosen[0]
    inside = quality_report.knob_sweep_lines(sweep | {"best": {"group_p": None, "distillation_weight": 1.0}})
    assert "the ladder's top" not in "\n".join(inside)


def test_table_e_reports_the_out_of_domain_and_in_domain_averages_beside_the_seven_tasks(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch, steps=160, lr=None)
    monkeypatch.setattr(quality_report, "RESULTS", tmp_path)
    scores = dict(zip(quality_rows.STS7, [60.0, 62.0, 64.0, 66.0, 68.0, 90.0, 90.0]))  # STS12-16 average 64
    for seed, shift in ((0, 0.0), (1, 2.0)):
        _write_run(settings, "E1-minilm", f"mnrl-seed{seed}.json", {t: v + shift for t, v in scores.items()})
        _write_run(settings, "A", f"mse-seed{seed}.json", scores)
    md = quality_report.report(settings)
    e_line = next(line for line in md.splitlines() if line.startswith("| ST MultipleNegativesRankingLoss"))
    # the seven tasks, then STS12-16, then STS-B test + SICK-R
    assert e_line.endswith("| 72.43 ± 1.41 (n=2) | 65.00 ± 1.41 (n=2) | 91.00 ± 1.41 (n=2) |  |")
    headers = [line for line in md.splitlines() if line.startswith("| row | STS12")]  # table A's, then E1's
    assert [header.endswith("| avg (mean ± std, n) | STS-B dev |") for header in headers] == [True, False]


def test_table_e_trains_a_teacher_free_row_once_per_student():
    name = quality_rows.run_name
    assert name("E1-mpnet", "mnrl", 1, 1e-4) == name("E1-minilm", "mnrl", 1, 1e-4) == "E1-minilm/mnrl-seed1-lr0.0001"
    assert name("E2-self", "cached-mnrl", 0, 5e-5) == "E2-mpnet/cached-mnrl-seed0-lr5e-05"
    assert name("E1-mpnet", "mnrl+kd", 1, 1e-4) == "E1-mpnet/mnrl+kd-seed1-lr0.0001"  # reads its teacher
    assert name("E2-self", "mnrl", 0, 5e-5) != name("E1-minilm", "mnrl", 0, 5e-5)  # another student
