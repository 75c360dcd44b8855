"""``distillcse eval`` through the CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distillcse_st.cli import main
from tests.evaluation.conftest import PAIRS, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def test_eval_prints_table_and_saves_results(tiny_model_dir: Path, sts_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["eval", str(tiny_model_dir), "--tasks", "STS12,STSBenchmark", "--data-dir", str(sts_dir),
                 "--output", str(out), "--batch-size", "4"])
    stdout = capsys.readouterr().out
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["scores"]) == {"STS12", "STSBenchmark"}
    assert f"{100 * summary['scores']['STS12']:.2f}" in stdout and "Average" in stdout
    assert (out / "results" / "local__model" / "no_revision_available" / "STSBenchmark.json").is_file()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("model", "model directory not found"),
        ("data_dir", "STS data directory not found"),
        ("data_file", "STSBenchmark: data file not found"),
        ("bad_line", "STS12.jsonl:4: invalid JSON"),
        ("task", "unknown task 'STS99'"),
    ],
)
def test_user_errors(case: str, message: str, tiny_model_dir: Path, sts_dir: Path, tmp_path: Path, capsys) -> None:
    model, data_dir, tasks = str(tiny_model_dir), sts_dir, "STS12"
    if case == "model":
        model = str(tmp_path / "no-model")
    elif case == "data_dir":
        data_dir = tmp_path / "no-data"
    elif case == "data_file":
        (sts_dir / "STSBenchmark.jsonl").unlink()
        tasks = "STS12,STSBenchmark"
    elif case == "bad_line":
        write_jsonl(sts_dir / "STS12.jsonl", PAIRS[:3])
        with (sts_dir / "STS12.jsonl").open("a") as f:
            f.write('{"sentence1": "a", "sentence2": \n')
    elif case == "task":
        tasks = "STS12,STS99"
    code = main(["eval", model, "--tasks", tasks, "--data-dir", str(data_dir), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("distillcse eval: error: ") and message in err and "Traceback" not in err


def test_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(option in out for option in ("MODEL_DIR", "--tasks", "sts7", "--data-dir", "--output", "--batch-size"))


def test_python_m_entry_point(tiny_model_dir: Path, sts_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "distillcse_st", "eval", str(tiny_model_dir), "--tasks", "STS12",
         "--data-dir", str(sts_dir), "--output", str(tmp_path / "o")],
        check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "STS12" in run.stdout and (tmp_path / "o" / "summary.json").is_file()
    assert "Batches" in run.stderr  # encoding progress bars
