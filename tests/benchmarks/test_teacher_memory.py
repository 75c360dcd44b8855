"""The teacher-memory benchmark's small helpers: /proc parsing, column sizes, the skip rule, target, extrapolation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import teacher_memory  # noqa: E402

from distillcse_st.teachers import CHUNK_SIZE  # noqa: E402

STATUS = """Name:\tpython
VmHWM:\t  204800 kB
VmRSS:\t  102400 kB
RssAnon:\t   81920 kB
Threads:\t4
"""


def test_status_fields_are_read_in_bytes_and_other_lines_skipped():
    assert teacher_memory.parse_status(STATUS) == {"VmHWM": 200 * 2**20, "VmRSS": 100 * 2**20, "RssAnon": 80 * 2**20}


def test_column_bytes_count_every_number_of_the_dtype():
    assert teacher_memory.column_bytes(10, 1536, 1, "float32") == 10 * 1536 * 4
    assert teacher_memory.column_bytes(10, 1536, 2, "float16") == 10 * 1536 * 2 * 2


def test_a_peak_is_predicted_from_the_largest_measured_size():
    assert teacher_memory.predicted_peak({}, 1000) == 0
    assert teacher_memory.predicted_peak({10: 5.0, 40: 100.0}, 160) == 400.0


def test_ensemble_cost_and_width_count_each_kind_of_teacher():
    ensemble = {"bert-base": 8, "bert-large": 4}
    assert teacher_memory.ensemble_width(ensemble) == 8 * 768 + 4 * 1024
    cost = teacher_memory.ensemble_cost({"bert-base": 0.5, "bert-large": 2.0}, ensemble, 10)
    assert cost == pytest.approx(10 * (8 * 0.5 + 4 * 2.0))


def run(rows: int, peak: float, seconds: float, implementation: str = "after") -> dict:
    return {"implementation": implementation, "columns": 1, "dtype": "float32", "rows": rows, "seconds": seconds,
            "peak_anon_growth": peak, "peak_rss_growth": peak,
            "column_bytes": teacher_memory.column_bytes(rows, 1536, 1, "float32")}


def test_target_compares_the_peak_growth_with_the_column_plus_a_chunk_and_checks_time_per_row():
    column = teacher_memory.column_bytes(160, 1536, 1, "float32")
    chunk = teacher_memory.column_bytes(8, 1536, 1, "float32")
    points = [run(10, 100.0, 1.0), run(40, 200.0, 4.0), run(160, 100.0 + column + chunk, 32.0)]
    result = teacher_memory.target(points, chunk_size=8)
    assert result["met"] and result["peak_growth"] == column + chunk and result["limit"] == column + chunk
    assert result["met_by_rss"] and result["rss_growth"] == column + chunk
    assert result["seconds_per_row_last_over_previous"] == pytest.approx(2.0)
    points[-1]["peak_anon_growth"] += 1
    assert not teacher_memory.target(points, chunk_size=8)["met"]
    assert teacher_memory.target(points, chunk_size=8)["met_by_rss"]


def test_series_groups_measured_runs_by_configuration_in_order_of_size():
    runs = [run(40, 2.0, 1.0), run(10, 1.0, 1.0), run(10, 6.0, 1.0, "before"),
            {**run(40, 0.0, 0.0, "before"), "skipped": "too big"}]
    grouped = teacher_memory.series(runs)
    assert [point["rows"] for point in grouped["after float32, 1 column"]] == [10, 40]
    assert [point["rows"] for point in grouped["before float32, 1 column"]] == [10]


def test_extrapolation_scales_the_measured_costs_to_wiki1m():
    runs = [run(100, 1.0, 0.01), run(100, 6 * teacher_memory.column_bytes(100, 1536, 1, "float32"), 0.01, "before")]
    result = teacher_memory.extrapolate(runs, {"bert-base": 0.1, "bert-large": 0.3})
    assert result["before_peak_over_column"] == pytest.approx(6)
    assert result["large_over_base_cost"] == pytest.approx(3)
    paper = result["ensembles"]["8 BERT-base + 4 BERT-large"]
    assert paper["width"] == 10240
    assert paper["cpu_hours_here"] == pytest.approx(1e6 * (8 * 0.1 + 4 * 0.3 + 1e-4) / 3600)
    assert paper["gpu_hours_assumed"] == pytest.approx(1e6 * (8 + 3 * 4) / teacher_memory.ASSUMED_GPU_BASE_PER_SECOND
                                                       / 3600)
    assert paper["column_float16_bytes"] == 1e6 * 10240 * 2
    assert paper["before_peak_bytes"] == pytest.approx(6 * 1e6 * 10240 * 4)
    chunk = teacher_memory.column_bytes(CHUNK_SIZE, 1536, 1, "float32")
    assert result["after_peak_over_chunk"] == pytest.approx(1 / chunk)
    assert paper["after_peak_bytes"] == pytest.approx(CHUNK_SIZE * 10240 * 4 / chunk)
