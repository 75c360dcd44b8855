"""Fixtures and a small Trainer runner for the reliability tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)

from distillcse_st import GroupPDistillLoss
from tests.helpers import CORPUS


def run_trainer(
    student_dir: Path,
    teacher: SentenceTransformer | None,
    output_dir: Path,
    steps: int = 4,
    batch_size: int = 8,
    group_p: float | None = 0.5,
    callbacks: Sequence = (),
    resume_from_checkpoint: str | None = None,
    dataset: Dataset | None = None,
    **overrides,
) -> tuple[SentenceTransformer, SentenceTransformerTrainer]:
    """Train a fresh copy of the tiny student with GroupPDistillLoss for ``steps`` steps (seed 0, dropout on).

    ``group_p=0.5`` so that a batch of 8 really gets shuffled (with 0.1 every group is one candidate).
    """
    student = SentenceTransformer(str(student_dir), device="cpu")
    dataset = Dataset.from_dict({"text": list(CORPUS)}) if dataset is None else dataset
    loss = GroupPDistillLoss(student, teacher=teacher, group_p=group_p)
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        learning_rate=1e-3,
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    args = SentenceTransformerTrainingArguments(**{**settings, **overrides})
    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=dataset, loss=loss, callbacks=list(callbacks)
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return student, trainer


def weights(model: SentenceTransformer) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[key].float() - b[key].float()).abs().max().item() for key in a)


@pytest.fixture(scope="package")
def no_dropout_student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_student_no_dropout"), seed=0, dropout=0.0)
