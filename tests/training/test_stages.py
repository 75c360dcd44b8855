from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainingArguments
from transformers import TrainerCallback

from distillcse_st.errors import InputError
from distillcse_st.evaluation.dev_evaluator import sts_dev_evaluator
from distillcse_st.training.corpus import load_corpus
from distillcse_st.training.defaults import MAX_SEQ_LENGTH
from distillcse_st.training.outputs import read_json
from distillcse_st.training.stages import (
    StartScore,
    start_score,
    train_distill,
    train_simcse,
    training_arguments,
    warn_if_below_start,
)
from tests.helpers import CORPUS, load
from tests.training.conftest import FAST_TRAINING

RESUMABLE = {**FAST_TRAINING, "max_steps": 6, "learning_rate": 1e-3}


class Interrupt(TrainerCallback):
    """Stop the run like Ctrl-C after ``step`` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step == self.step:
            raise KeyboardInterrupt


def _distill(student: Path, teacher: Path, output: Path, dev_file: Path, **kwargs) -> dict:
    corpus = Dataset.from_dict({"text": CORPUS})
    return train_distill(student, [teacher], corpus, output, training_options=RESUMABLE, dev_file=dev_file, **kwargs)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tiny_teacher_dir: Path, dev_file: Path, tmp_path_factory) -> Path:
    """An uninterrupted 6-step DistillCSE run."""
    output = tmp_path_factory.mktemp("reference") / "model"
    _distill(tiny_model_dir, tiny_teacher_dir, output, dev_file)
    return output


def test_interrupted_run_resumes_to_the_same_result(
    tiny_model_dir: Path, tiny_teacher_dir: Path, dev_file: Path, reference: Path, tmp_path: Path
) -> None:
    with pytest.raises(KeyboardInterrupt):
        _distill(tiny_model_dir, tiny_teacher_dir, tmp_path / "resumed", dev_file, callbacks=[Interrupt(3)])
    assert not (tmp_path / "resumed").exists()
    assert (tmp_path / "resumed.partial" / "checkpoints" / "checkpoint-2").is_dir()
    resumed = _distill(tiny_model_dir, tiny_teacher_dir, tmp_path / "resumed", dev_file)
    assert not (tmp_path / "resumed.partial").exists()
    history = read_json(reference / "stage.json")["history"]
    assert [point["step"] for point in history] == [0, 2, 4, 6]  # the start once: the resumed run kept its score
    assert resumed["history"] == history and resumed["start_dev"] == history[0]["dev"]
    for name, value in load(reference).state_dict().items():
        torch.testing.assert_close(load(tmp_path / "resumed").state_dict()[name], value, rtol=0, atol=1e-6)


def test_stage_outputs(tiny_model_dir: Path, tiny_teacher_dir: Path, dev_file: Path, reference: Path) -> None:
    stage = read_json(reference / "stage.json")
    assert stage["config"]["teachers"] == [str(tiny_teacher_dir.resolve())]
    evaluator = sts_dev_evaluator(dev_file)
    start = load(tiny_model_dir)
    start.max_seq_length = MAX_SEQ_LENGTH
    assert stage["start_dev"] == pytest.approx(100 * evaluator(start)[evaluator.primary_metric], abs=1e-4)
    assert stage["steps"] == 6 and stage["best_checkpoint"].startswith("checkpoint-")
    assert sorted(path.name for path in reference.iterdir() if path.is_dir()) == ["1_Pooling"]


BASE_CARD = """---
language: de
license: mit
---

# tiny-bert
"""


def test_saved_model_keeps_its_base_length_and_card_names_no_path(
    tiny_model_dir: Path, tiny_teacher_dir: Path, dev_file: Path, corpus_file: Path, tmp_path: Path
) -> None:
    base = load(tiny_model_dir)
    base.max_seq_length = 48
    base.save(str(tmp_path / "base"))
    (tmp_path / "base" / "README.md").write_text(BASE_CARD, encoding="utf-8")
    corpus = load_corpus(corpus_file)
    options = {**FAST_TRAINING, "max_steps": 2}
    output = tmp_path / "student"
    train_distill(tmp_path / "base", [tiny_teacher_dir], corpus, output, training_options=options, dev_file=dev_file,
                  max_seq_length=16)
    stage = read_json(output / "stage.json")
    assert stage["config"]["max_seq_length"] == 16 and stage["saved_max_seq_length"] == 48
    assert load(output).max_seq_length == 48

    card = (output / "README.md").read_text(encoding="utf-8")
    for local in (str(tmp_path.parent.parent), str(tiny_teacher_dir.parent), sys.prefix, str(Path.home())):
        assert local not in card
    assert not re.search(r"(^|[\s'\"(=])/\w+/", card, re.MULTILINE)  # no absolute path of any kind
    assert "# DistillCSE student of tiny-bert, teacher: model" in card  # the base's title, the teacher's dir name
    assert "license: mit" in card and "- de" in card and f"#### {corpus_file.name}" in card
    assert "GroupPDistillLoss" in card and "xu2023distillcse" in card


def test_output_of_another_run_is_refused(tiny_model_dir: Path, dev_file: Path, tmp_path: Path) -> None:
    corpus = Dataset.from_dict({"text": CORPUS})
    options = {**FAST_TRAINING, "max_steps": 2}
    with pytest.raises(KeyboardInterrupt):
        train_simcse(
            tiny_model_dir,
            corpus,
            tmp_path / "out",
            training_options=options,
            dev_file=dev_file,
            callbacks=[Interrupt(1)],
        )
    other = {**options, "seed": 7}
    with pytest.raises(InputError, match="holds another run"):
        train_simcse(tiny_model_dir, corpus, tmp_path / "out", training_options=other, dev_file=dev_file)
    train_simcse(tiny_model_dir, corpus, tmp_path / "out", training_options=other, dev_file=dev_file, overwrite=True)
    with pytest.raises(InputError, match="already exists"):
        train_simcse(tiny_model_dir, corpus, tmp_path / "out", training_options=other, dev_file=dev_file)


def test_corpus_smaller_than_a_batch(tiny_model_dir: Path, dev_file: Path, tmp_path: Path) -> None:
    corpus = Dataset.from_dict({"text": CORPUS[:5]})
    with pytest.raises(InputError, match="fewer than one batch"):
        train_simcse(tiny_model_dir, corpus, tmp_path / "out", training_options=FAST_TRAINING, dev_file=dev_file)
    assert not (tmp_path / "out.partial").exists()


def test_the_start_score_is_step_0_of_the_history() -> None:
    history = [{"step": 0, "dev": 86.6}, {"step": 125, "dev": 84.1}, {"step": 250, "dev": 83.7}]
    assert start_score(history) == 86.6
    assert start_score(history[1:]) is None  # a run from before the start was scored


def test_a_stage_below_its_start_on_dev_says_so(caplog) -> None:
    with caplog.at_level("WARNING", logger="distillcse_st.training.stages"):
        warn_if_below_start(86.6, 84.1)
    assert "86.60 at the start, 84.10 kept" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="distillcse_st.training.stages"):
        warn_if_below_start(60.0, 84.1)
        warn_if_below_start(None, 84.1)
    assert not caplog.records


def test_scoring_the_start_does_not_change_training(
    tiny_model_dir: Path, dev_file: Path, tmp_path: Path, monkeypatch
) -> None:
    corpus = Dataset.from_dict({"text": CORPUS})
    options = {**FAST_TRAINING, "learning_rate": 1e-3}
    scored = train_simcse(tiny_model_dir, corpus, tmp_path / "scored", training_options=options, dev_file=dev_file)
    monkeypatch.setattr(StartScore, "on_train_begin", lambda *args, **kwargs: None)
    plain = train_simcse(tiny_model_dir, corpus, tmp_path / "plain", training_options=options, dev_file=dev_file)
    assert plain["start_dev"] is None and scored["start_dev"] is not None
    assert [p["step"] for p in scored["history"]] == [0, *(p["step"] for p in plain["history"])]
    for name, value in load(tmp_path / "plain").state_dict().items():
        torch.testing.assert_close(load(tmp_path / "scored").state_dict()[name], value, rtol=0, atol=0)


def test_the_batch_size_is_the_global_batch(tmp_path: Path, monkeypatch) -> None:
    """Each of N processes gets batch / N sentences; a batch that N does not divide is an input error."""
    monkeypatch.setattr(SentenceTransformerTrainingArguments, "world_size", property(lambda self: 4))
    assert training_arguments(tmp_path / "out", {"per_device_train_batch_size": 64}).per_device_train_batch_size == 16
    with pytest.raises(InputError) as error:
        training_arguments(tmp_path / "out", {"per_device_train_batch_size": 66})
    assert str(error.value) == "the batch size 66 (the global batch) is not divisible by the 4 processes"
