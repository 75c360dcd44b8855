"""The demo-seeds benchmark's summary: means, sample stds and the DistillCSE - SimCSE gain per split."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from demo_seeds import summary  # noqa: E402


def run(seed: int, simcse_test: float, distillcse_test: float) -> dict:
    rows = {"start": {"dev": 60.0, "test": 50.0}, "SimCSE": {"dev": 70.0, "test": simcse_test},
            "DistillCSE": {"dev": 72.0 + seed, "test": distillcse_test}}
    return {"seed": seed, "rows": rows, "seconds": 1.0}


def test_summary_gives_mean_and_sample_std_of_scores_and_gains() -> None:
    table = summary([run(0, 68.0, 72.0), run(1, 70.0, 73.0)])
    assert table["SimCSE test"] == pytest.approx({"mean": 69.0, "std": 2**0.5})
    assert table["DistillCSE - SimCSE test"] == pytest.approx({"mean": 3.5, "std": 0.5 * 2**0.5})
    assert table["DistillCSE - SimCSE dev"] == pytest.approx({"mean": 2.5, "std": 0.5 * 2**0.5})
    assert table["start dev"]["std"] == 0.0


def test_summary_of_one_seed_has_no_spread() -> None:
    assert summary([run(0, 68.0, 72.0)])["DistillCSE test"] == {"mean": 72.0, "std": 0.0}
