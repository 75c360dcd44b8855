"""STS-B dev evaluator for training: sentence-transformers' ``EmbeddingSimilarityEvaluator`` on a jsonl file.

Use it as ``evaluator=`` of ``SentenceTransformerTrainer`` with ``eval_strategy="steps"``,
``eval_steps=125`` (as the DistillCSE authors), ``load_best_model_at_end=True`` and
``metric_for_best_model=metric_for_best_model(name)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from distillcse_st.errors import InputError
from distillcse_st.evaluation.sts_tasks import read_sts_jsonl, split_file

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

DEV_FILE_ENV = "DISTILLCSE_STSB_DEV"
"""Environment variable naming the dev jsonl file (or a data dir holding ``STSBenchmark-dev.jsonl``)."""

PACKAGED_DEV_FILE = Path(__file__).resolve().parent.parent / "data" / "stsb_dev.jsonl.gz"


def dev_file(path_or_data_dir: str | Path | None = None) -> Path:
    """The dev jsonl(.gz) to use: the argument, else ``$DISTILLCSE_STSB_DEV``, else the packaged STS-B dev.

    A directory stands for its ``STSBenchmark-dev.jsonl[.gz]``.
    """
    chosen = path_or_data_dir if path_or_data_dir is not None else os.environ.get(DEV_FILE_ENV) or None
    if chosen is None:
        if not PACKAGED_DEV_FILE.is_file():
            raise InputError(
                f"no STS dev file given, ${DEV_FILE_ENV} is unset and {PACKAGED_DEV_FILE} is missing"
            )
        return PACKAGED_DEV_FILE
    path = Path(chosen)
    return split_file(path, "STSBenchmark", "validation") if path.is_dir() else path


def sts_dev_evaluator(
    path_or_data_dir: str | Path | None = None,
    name: str = "sts-dev",
    batch_size: int = 64,
    show_progress_bar: bool = False,
) -> EmbeddingSimilarityEvaluator:
    """An ``EmbeddingSimilarityEvaluator`` (cosine Spearman as primary metric) on an STS jsonl file.

    See :func:`dev_file` for how ``path_or_data_dir`` is resolved; the file is read and validated now.
    """
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    from sentence_transformers.util.similarity import SimilarityFunction

    data = read_sts_jsonl(dev_file(path_or_data_dir))
    return EmbeddingSimilarityEvaluator(
        data["sentence1"],
        data["sentence2"],
        data["score"],
        batch_size=batch_size,
        main_similarity=SimilarityFunction.COSINE,
        name=name,
        show_progress_bar=show_progress_bar,
    )


def metric_for_best_model(name: str = "sts-dev") -> str:
    """The Trainer metric key of the evaluator's primary metric (cosine Spearman)."""
    return f"eval_{name}_spearman_cosine"
