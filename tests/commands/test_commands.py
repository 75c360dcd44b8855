"""Every training command end to end on tiny models, and their one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from distillcse_st.cli import main
from distillcse_st.training.outputs import read_json
from tests.helpers import load
from tests.training.conftest import FAST_ARGS


def _run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_prune(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "prune", "--model", tiny_model_dir, "--layers", "1", "--output", tmp_path / "p")
    assert code == 0 and "Saved the pruned model" in out
    assert load(tmp_path / "p")[0].auto_model.config.num_hidden_layers == 1


def test_simcse_and_distill(
    tiny_model_dir: Path,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    dev_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    common = ["--corpus", corpus_file, "--dev-file", dev_file, "--max-seq-length", "16", *FAST_ARGS]
    code, out, _ = _run(
        capsys, "simcse", "--model", tiny_model_dir, "--output", tmp_path / "s", "--seed", "3", *common
    )
    assert code == 0 and "STS-B dev Spearman" in out
    assert read_json(tmp_path / "s" / "stage.json")["config"]["training"]["seed"] == 3
    assert load(tmp_path / "s").max_seq_length == 32  # trained at 16, saved with the base's length
    code, _, _ = _run(
        capsys,
        "distill",
        "--model",
        tiny_model_dir,
        "--teacher",
        tiny_teacher_dir,
        "--teacher",
        tmp_path / "s",
        "--weights",
        "0.25,0.75",
        "--group-p",
        "none",
        "--online",
        "--output",
        tmp_path / "d",
        *common,
    )
    assert code == 0
    stage = read_json(tmp_path / "d" / "stage.json")
    assert stage["config"]["weights"] == [0.25, 0.75] and stage["config"]["loss"]["group_p"] is None
    assert "MultiTeacherAvgLoss" in (tmp_path / "d" / "README.md").read_text(encoding="utf-8")
    assert load(tmp_path / "d").max_seq_length == 32


def test_self_train_resumes_and_skips(
    tiny_model_dir: Path,
    corpus_file: Path,
    dev_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = [
        "self-train",
        "--model",
        tiny_model_dir,
        "--corpus",
        corpus_file,
        "--components",
        "2",
        "--rounds",
        "2",
        "--output",
        tmp_path / "st",
        "--dev-file",
        dev_file,
        *FAST_ARGS,
    ]
    code, stdout, _ = _run(capsys, *argv)
    assert code == 0 and "round2-distill" in stdout and "Final model:" in stdout
    out = tmp_path / "st"
    summary = read_json(out / "summary.json")
    assert list(summary["scores"]) == ["base", "round0-simcse1", "round0-simcse2", "round1-distill", "round2-distill"]
    for stage in list(summary["scores"])[1:]:  # every stage starts from the base, scored by its first step
        assert read_json(out / stage / "stage.json")["start_dev"] == pytest.approx(summary["scores"]["base"])
    assert read_json(out / "round0-simcse2" / "stage.json")["config"]["training"]["seed"] == 43
    assert read_json(out / "round2-distill" / "stage.json")["config"]["teachers"] == [str(out / "round1-distill")]
    assert len(list((out / "teacher_cache").glob("*.npy"))) == 2
    assert (out / "dev_scores.png").stat().st_size > 1000
    caplog.clear()
    with caplog.at_level("INFO", logger="distillcse_st"):
        assert _run(capsys, *argv)[0] == 0
    assert caplog.text.count("skipped") == 4
    code, _, err = _run(capsys, *argv[: -len(FAST_ARGS)], *FAST_ARGS, "--seed", "5")
    assert code == 2 and "holds another run" in err and "--overwrite" in err


def test_demo(dev_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["demo", "--output", tmp_path / "demo", "--dev-file", dev_file, *FAST_ARGS]  # trains at 32 tokens
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert [row[0] for row in rows] == ["start:", "SimCSE", "DistillCSE"]
    assert all(-100 <= float(value) <= 100 for row in rows for value in row[-2:])
    recipe = tmp_path / "demo" / "self-train"
    assert (recipe / "dev_scores.png").is_file() and sorted(read_json(recipe / "test_scores.json")) == [
        "round0-simcse1", "round1-distill", "start"
    ]
    assert read_json(recipe / "round0-simcse1" / "stage.json")["config"]["training"]["learning_rate"] == 5e-5
    distilled = read_json(recipe / "round1-distill" / "stage.json")["config"]
    assert distilled["training"]["learning_rate"] == 4e-4 and distilled["loss"]["group_p"] == 0.5
    assert distilled["teachers"] == [str(recipe / "round0-simcse1")]
    student = load(recipe / "round1-distill")
    assert student[0].auto_model.config.num_hidden_layers == 3
    assert student.max_seq_length == 256  # all-MiniLM-L6-v2's
    card = (recipe / "round1-distill" / "README.md").read_text(encoding="utf-8")
    assert "# DistillCSE student of all-MiniLM-L6-v2 (encoder layers 0, 1, 2), teacher: round0-simcse1" in card
    assert "license: apache-2.0" in card and str(tmp_path) not in card and sys.prefix not in card
    assert _run(capsys, *argv)[1].splitlines()[-4:-1] == out.splitlines()[-4:-1]  # resumed: nothing retrained


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_errors(
    tiny_model_dir: Path, corpus_file: Path, dev_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train = ["--model", tiny_model_dir, "--dev-file", dev_file, *FAST_ARGS]
    cases = [
        (["simcse", *train, "--corpus", tmp_path / "none.txt", "--output", tmp_path / "o"], "corpus not found"),
        (["simcse", *train, "--corpus", _write(tmp_path / "e.txt", b"\n\n"), "--output", tmp_path / "o"], "is empty"),
        (
            ["simcse", *train, "--corpus", _write(tmp_path / "s.txt", b"a b c\nd e f\n"), "--output", tmp_path / "o"],
            "fewer than one batch",
        ),
        (
            ["simcse", *train, "--corpus", _write(tmp_path / "l.txt", b"ok\nbad \xe9\n"), "--output", tmp_path / "o"],
            "line 2 is not valid UTF-8",
        ),
        (
            ["distill", *train, "--teacher", tmp_path, "--corpus", corpus_file, "--output", tmp_path / "o"],
            "is not a SentenceTransformer or transformers model",
        ),
        (["prune", "--model", tiny_model_dir, "--layers", "0-5", "--output", tmp_path / "o"], "out of range"),
        (
            ["self-train", *train, "--corpus", corpus_file, "--components", "0", "--output", tmp_path / "o"],
            "--components must be at least 1",
        ),
        (
            ["simcse", *train, "--corpus", corpus_file, "--output", tmp_path / "o", "--training-arg", "nope=1"],
            "invalid training arguments",
        ),
        (  # a ValueError of the loss constructor
            ["simcse", *train, "--corpus", corpus_file, "--output", tmp_path / "o", "--contrastive-temperature", "0"],
            "contrastive_temperature",
        ),
        (
            ["distill", *train, "--teacher", tiny_model_dir, "--weights", "1,2", "--corpus", corpus_file,
             "--output", tmp_path / "o"],
            "2 weights for 1 teachers",
        ),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2, argv
        last = err.strip().splitlines()[-1]  # after progress bars of model loading, if any
        assert last.startswith(f"distillcse {argv[0]}: error: ") and message in last and "Traceback" not in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


UNTRAINABLE = [  # (option, value, what the one-line error says); each trains nothing or ended in a traceback
    ("--batch-size", "1", "batch size must be at least 2"),
    ("--batch-size", "0", "batch size must be at least 2"),
    ("--learning-rate", "-1", "learning_rate must be a positive number"),
    ("--learning-rate", "0", "learning_rate must be a positive number"),
    ("--learning-rate", "nan", "learning_rate must be a positive number"),
    ("--learning-rate", "inf", "learning_rate must be a positive number"),
    ("--max-steps", "0", "max_steps must be positive"),
    ("--max-steps", "-2", "max_steps must be positive"),
    ("--eval-steps", "-1", "eval_steps must be positive"),
    ("--save-steps", "0", "save_steps must be positive"),
    ("--logging-steps", "-1", "logging_steps must be positive"),
    ("--save-total-limit", "0", "save_total_limit must be at least 1"),
    ("--seed", "-1", "seed must be between 0 and 2**32 - 1"),
    ("--seed", str(2**32), "seed must be between 0 and 2**32 - 1"),
    ("--max-seq-length", "0", "max_seq_length must be at least 1"),
    ("--max-sentences", "0", "max_sentences must be at least 1"),
    ("--training-arg", "adam_beta1=2", "the optimiser (adamw_torch"),
    ("--training-arg", "adam_epsilon=-1", "the optimiser (adamw_torch"),
    ("--training-arg", "gradient_accumulation_steps=0", "gradient_accumulation_steps must be positive"),
]


@pytest.mark.parametrize("command", ["simcse", "self-train"])
def test_settings_that_cannot_train_are_refused_in_one_line(
    command: str, tiny_model_dir: Path, corpus_file: Path, dev_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    base = [command, "--model", tiny_model_dir, "--corpus", corpus_file, "--dev-file", dev_file, *FAST_ARGS]
    for option, value, message in UNTRAINABLE:
        argv = [*base, option, value, "--output", tmp_path / "o"]
        code, _, err = _run(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"distillcse {command}: error: "), (option, err)
        assert message in lines[0], (option, value, lines[0])
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()
    assert _run(capsys, *base, "--num-train-epochs", "0", "--max-steps", "-1", "--output", tmp_path / "o")[0] == 2


def test_eval_names_a_mistyped_model_path_before_the_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(capsys, "eval", tmp_path / "no-such-model", "--data-dir", tmp_path / "no-such-data")
    assert code == 2 and err.strip() == f"distillcse eval: error: model directory not found: {tmp_path}/no-such-model"
    assert not (tmp_path / "no-such-model").exists()


def test_help_shows_paper_defaults(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    out = capsys.readouterr().out
    for default in (
        "rate (default: 3e-05)",
        "the global batch, split between them (default: 64)",
        "keeps its base's maximum length (default: 32)",
        "temperature (default: 0.05)",
        "(default: 0.025)",
        "(default: 0.0125)",
        "(default: 0.1)",
        "(default: 125)",
    ):
        assert default in out, default
