"""The DistillCSE self-training recipe: K SimCSE teacher components, then rounds of distillation.

Round 0 trains ``components`` unsupervised SimCSE models from the base model with seeds ``seed``,
``seed + 1``, ...; round 1 distils their averaged similarities into a student initialised from the base
model; each later round distils the previous round's student into a fresh student. Every stage is a
directory of the output (``round0-simcse1``, ..., ``round1-distill``, ...) with a ``stage.json``; a finished
stage is skipped when the recipe runs again, an unfinished one resumes from its last checkpoint, and the
teachers of each round encode the corpus once into ``teacher_cache/``. Under ``torchrun`` or ``accelerate launch``
every stage trains on all processes (see :mod:`~distillcse_st.training.stages`); the main process writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import TrainerCallback

from distillcse_st.errors import InputError
from distillcse_st.models import check_model_dir
from distillcse_st.training.defaults import MAX_SEQ_LENGTH, TRAINING_DEFAULTS, result_settings
from distillcse_st.training.outputs import check_run_dir, read_json, write_json
from distillcse_st.training.plots import plot_dev_scores
from distillcse_st.training.stages import (
    STAGE_FILE,
    TEACHER_CACHE,
    stage_config,
    train_distill,
    train_simcse,
    training_arguments,
)

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
PLOT_FILE = "dev_scores.png"


def stage_names(components: int, rounds: int) -> list[str]:
    """The stage directories of the recipe, in training order."""
    return [f"round0-simcse{k}" for k in range(1, components + 1)] + [
        f"round{r}-distill" for r in range(1, rounds + 1)
    ]


def summary_table(scores: dict[str, float], records: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: stage, STS-B dev, steps, training time."""
    lines = [f"{'stage':<18} {'STS-B dev':>9} {'steps':>6} {'train s':>8}"]
    for name, score in scores.items():
        record = records.get(name, {})
        runtime = record.get("train_runtime")
        lines.append(
            f"{name:<18} {score:>9.2f} {record.get('steps', ''):>6} {'' if runtime is None else f'{runtime:.0f}':>8}"
        )
    return "\n".join(lines)


def self_train(
    model_dir: str | Path,
    corpus: Dataset,
    output: str | Path,
    components: int = 2,
    rounds: int = 1,
    loss_options: dict[str, Any] | None = None,
    training_options: dict[str, Any] | None = None,
    max_seq_length: int = MAX_SEQ_LENGTH,
    dev_file: str | Path | None = None,
    overwrite: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
    simcse_training_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the whole recipe under ``output``; returns the summary also saved in ``summary.json``.

    ``loss_options`` are the distillation rounds' loss keyword arguments (SimCSE uses their
    ``contrastive_temperature``); ``training_options`` are Trainer arguments for every stage, whose
    ``seed`` is the first component's seed; ``simcse_training_options`` override them in round 0 (e.g. its
    own ``learning_rate``: SimCSE and distillation rarely share their best one).
    """
    if components < 1:
        raise InputError(f"--components must be at least 1, got {components}")
    if rounds < 0:
        raise InputError(f"--rounds must be at least 0, got {rounds}")
    output = Path(output)
    model_dir = check_model_dir(model_dir, "base")
    loss_options = dict(loss_options or {})
    training_options = dict(training_options or {})
    simcse_training_options = {**training_options, **(simcse_training_options or {})}
    config = stage_config(
        "self-train",
        model_dir,
        corpus,
        max_seq_length,
        loss_options,
        training_options,
        components=components,
        rounds=rounds,
        simcse_training=result_settings(simcse_training_options),
    )
    processes = training_arguments(output, training_options)  # the run's processes, as its stages set them up
    with processes.main_process_first(local=False, desc="output directory"):
        check_run_dir(output, config, overwrite)
    seed = training_options.get("seed", TRAINING_DEFAULTS["seed"])
    simcse_loss = {key: value for key, value in loss_options.items() if key == "contrastive_temperature"}
    common = {"max_seq_length": max_seq_length, "dev_file": dev_file, "overwrite": True, "callbacks": callbacks}
    records: dict[str, dict[str, Any]] = {}
    names = stage_names(components, rounds)
    for index, name in enumerate(names):
        stage = output / name
        if (stage / STAGE_FILE).is_file():
            logger.info("Stage %s is done (STS-B dev %.2f): skipped", name, read_json(stage / STAGE_FILE)["dev"])
        elif index < components:
            logger.info("Stage %s: unsupervised SimCSE, seed %d", name, seed + index)
            train_simcse(
                model_dir, corpus, stage, simcse_loss, {**simcse_training_options, "seed": seed + index}, **common
            )
        else:
            teachers = names[:components] if index == components else [names[index - 1]]
            logger.info("Stage %s: DistillCSE from %s", name, ", ".join(teachers))
            train_distill(
                model_dir,
                [output / teacher for teacher in teachers],
                corpus,
                stage,
                cache_dir=output / TEACHER_CACHE,
                loss_options=loss_options,
                training_options=training_options,
                **common,
            )
        records[name] = read_json(stage / STAGE_FILE)
    # every stage starts from the base: the first one's start score is the base's
    scores = {"base": records[names[0]]["start_dev"], **{name: record["dev"] for name, record in records.items()}}
    summary = {
        "scores": scores,
        "table": summary_table(scores, records),
        "final_model": str(output / names[-1]),
        "plot": str(output / PLOT_FILE),
    }
    if processes.distributed_state.is_main_process:
        histories = {name: record["history"] for name, record in records.items()}
        plot_dev_scores(scores, histories, output / PLOT_FILE, "DistillCSE self-training: STS-B dev")
        write_json(output / SUMMARY_FILE, summary)
    processes.distributed_state.wait_for_everyone()
    return summary
