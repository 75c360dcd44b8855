"""One training stage on ``SentenceTransformerTrainer``: unsupervised SimCSE, or DistillCSE from teachers.

A stage scores its start on STS-B dev, trains a student on a corpus with the dev evaluator every
``eval_steps`` (keeping the best checkpoint), then saves the SentenceTransformer and a ``stage.json``
(settings, dev score of the start and of the kept checkpoint, dev scores over steps) in its output directory.
When no checkpoint beats the start on dev (SimCSE on an already strong model does that), it says so.
It works in ``OUTPUT.partial/`` (see :mod:`~distillcse_st.training.outputs`): an interrupted
stage resumes from its last checkpoint when run again with the same settings.

A stage runs the same on one process or on several (``torchrun``, ``accelerate launch``; CPU processes
with gloo when there is no accelerator): the batch is the global batch, split between the processes, whose
losses gather the embeddings of all of them, so that N processes train like one. Every process trains and
evaluates; the main process alone writes the output, and the others wait for it.

The student trains, and is scored on dev, at the run's ``max_seq_length`` (the authors' 32 tokens by default),
but is saved with its base model's maximum length, so that it encodes long texts as its base did.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from distillcse_st.errors import InputError
from distillcse_st.evaluation.dev_evaluator import metric_for_best_model, sts_dev_evaluator
from distillcse_st.losses import GroupPDistillLoss, MultiTeacherAvgLoss
from distillcse_st.models import check_model_dir, load_model
from distillcse_st.teachers import resolve_weights
from distillcse_st.training.corpus import texts_digest
from distillcse_st.training.defaults import MAX_SEQ_LENGTH, TRAINING_DEFAULTS, result_settings
from distillcse_st.training.model_cards import describe, model_name
from distillcse_st.training.outputs import finish, partial_dir, start, write_json
from distillcse_st.training.teacher_cache import cached_teacher_embeddings, with_cached_labels
from distillcse_st.training.trainable import check_max_seq_length, check_trainable, global_batch_size

logger = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
CHECKPOINTS = "checkpoints"
TEACHER_CACHE = "teacher_cache"

FIXED_TRAINING_ARGUMENTS: dict[str, Any] = {
    "eval_strategy": "steps",
    "save_strategy": "steps",
    "load_best_model_at_end": True,
    "metric_for_best_model": metric_for_best_model(),
    "greater_is_better": True,
    "dataloader_drop_last": True,
    "report_to": "none",
}
"""What the stages rely on: evaluation and checkpoints every few steps, the best dev checkpoint kept."""

class DevScoreLog(TrainerCallback):
    """One log line per evaluation: the step, the STS-B dev Spearman x 100 and the best so far."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        score = (metrics or {}).get(args.metric_for_best_model)
        if score is not None:
            best = max(score, state.best_metric or score)
            logger.info("step %d: STS-B dev Spearman %.2f (best %.2f)", state.global_step, 100 * score, 100 * best)


class StartScore(TrainerCallback):
    """Scores the start of a fresh run on dev into the log history (step 0; never a checkpoint candidate).

    Unlike the Trainer's ``eval_on_start``, whose evaluation loop draws a seed from the global RNG and so
    shifts every later dropout mask, the evaluator alone draws nothing: training is unchanged. A resumed run
    finds the score in the log history of its checkpoint.
    """

    def __init__(self, evaluator: EmbeddingSimilarityEvaluator) -> None:
        self.evaluator = evaluator

    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        if state.global_step == 0:
            score = self.evaluator(model)[self.evaluator.primary_metric]
            state.log_history.append({"step": 0, metric_for_best_model(): score})
            logger.info("start: STS-B dev Spearman %.2f", 100 * score)


def dev_history(log_history: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """``[{"step", "dev"}]`` (Spearman x 100) from the Trainer's log history, step 0 being the start."""
    key = metric_for_best_model()
    return [{"step": entry["step"], "dev": 100 * entry[key]} for entry in log_history if key in entry]


def start_score(history: Sequence[dict[str, float]]) -> float | None:
    """The start's dev score in a :func:`dev_history` (None for a run from before the start was scored)."""
    return next((point["dev"] for point in history if point["step"] == 0), None)


def warn_if_below_start(start_dev: float | None, dev: float) -> None:
    """Warns when the kept checkpoint scores below the start on dev."""
    if start_dev is not None and dev < start_dev:
        logger.warning(
            "No checkpoint beat the start on STS-B dev (%.2f at the start, %.2f kept): training lowered this "
            "model; the start model may be the better choice",
            start_dev,
            dev,
        )


def training_arguments(output: Path, training_options: dict[str, Any] | None) -> SentenceTransformerTrainingArguments:
    """Trainer arguments for a stage writing ``output``: the authors' defaults updated by ``training_options``.

    Their ``per_device_train_batch_size`` is the global batch: each of the run's ``world_size`` processes
    gets an equal share of it. Without an accelerator, the processes are CPU processes (``use_cpu``).
    Building the arguments sets up the processes of the run (``args.distributed_state``).
    """
    options = {
        **TRAINING_DEFAULTS,
        "use_cpu": not torch.accelerator.is_available(),
        **(training_options or {}),
        **FIXED_TRAINING_ARGUMENTS,
    }
    options["output_dir"] = str(partial_dir(output) / CHECKPOINTS)
    try:
        args = SentenceTransformerTrainingArguments(**options)
    except (TypeError, ValueError) as error:
        raise InputError(f"invalid training arguments: {error}") from None
    batch_size = args.per_device_train_batch_size
    if batch_size % args.world_size:
        raise InputError(
            f"the batch size {batch_size} (the global batch) is not divisible by the {args.world_size} processes"
        )
    args.per_device_train_batch_size = batch_size // args.world_size
    check_trainable(args)
    return args


def check_corpus_size(corpus: Dataset, args: SentenceTransformerTrainingArguments) -> None:
    batch_size = global_batch_size(args)
    if len(corpus) < batch_size:
        raise InputError(f"the corpus has {len(corpus)} sentences, fewer than one batch ({batch_size})")


def stage_config(
    stage: str,
    model_dir: Path,
    corpus: Dataset,
    max_seq_length: int,
    loss_options: dict[str, Any],
    training_options: dict[str, Any] | None,
    **settings: Any,
) -> dict[str, Any]:
    """A run's settings (its ``run.json``, and ``stage.json``'s ``config``), ``settings`` after the model."""
    check_max_seq_length(max_seq_length)
    return {
        "stage": stage,
        "model": str(model_dir),
        **settings,
        "corpus": texts_digest(corpus["text"]),
        "max_seq_length": max_seq_length,
        "loss": loss_options,
        "training": result_settings(training_options),
    }


def stage_setup(
    model_dir: Path,
    corpus: Dataset,
    output: Path,
    training_options: dict[str, Any] | None,
    dev_file: str | Path | None,
) -> tuple[SentenceTransformerTrainingArguments, EmbeddingSimilarityEvaluator, SentenceTransformer]:
    """A stage's Trainer arguments (checked against the corpus size), STS-B dev evaluator and student."""
    args = training_arguments(output, training_options)
    check_corpus_size(corpus, args)
    return args, sts_dev_evaluator(dev_file), load_model(model_dir, "student")


@contextmanager
def loss_arguments() -> Iterator[None]:
    """Around building a loss: the ``ValueError`` of a bad loss argument or teacher weight is an input error.

    The losses raise plain ``ValueError`` (they are used without this package's command line too).
    """
    try:
        yield
    except ValueError as error:
        raise InputError(str(error)) from None


def run_stage(
    model: SentenceTransformer,
    dataset: Dataset,
    loss: nn.Module,
    args: SentenceTransformerTrainingArguments,
    evaluator: EmbeddingSimilarityEvaluator,
    output: Path,
    config: dict[str, Any],
    max_seq_length: int | None = None,
    resume_from_checkpoint: str | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """Train with the Trainer in ``output``'s work dir (resuming its last checkpoint), save, move to ``output``.

    A fresh run scores the start on dev first (:class:`StartScore`; the Trainer still keeps the best trained
    checkpoint). ``model`` trains at ``max_seq_length`` (default: its own) and is saved with the maximum
    length it came with. Returns the stage record also written to ``output/stage.json`` (by the main process;
    every process returns once it is written).
    """
    work = partial_dir(output)
    saved_max_seq_length = model.max_seq_length
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=[StartScore(evaluator), DevScoreLog(), *callbacks],
    )
    checkpoints = work / CHECKPOINTS
    if resume_from_checkpoint is None and checkpoints.is_dir():
        resume_from_checkpoint = get_last_checkpoint(str(checkpoints))
    if resume_from_checkpoint:
        logger.info("Resuming from %s", resume_from_checkpoint)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.accelerator.wait_for_everyone()  # every process is done with the checkpoints and the cache
    # The Trainer has loaded the best checkpoint, whose score it knows; evaluate only a run too short to have one.
    best = trainer.state.best_metric
    dev = 100 * (best if best is not None else evaluator(model)[evaluator.primary_metric])
    logger.info("Final STS-B dev Spearman: %.2f", dev)
    model.max_seq_length = saved_max_seq_length
    history = dev_history(trainer.state.log_history)
    start_dev = start_score(history)
    warn_if_below_start(start_dev, dev)
    record = {
        "config": config,
        "dev": dev,
        "start_dev": start_dev,
        "saved_max_seq_length": saved_max_seq_length,
        "steps": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint and Path(trainer.state.best_model_checkpoint).name,
        "history": history,
        "train_runtime": next((e["train_runtime"] for e in trainer.state.log_history if "train_runtime" in e), None),
        "world_size": args.world_size,
    }
    if trainer.is_world_process_zero():
        model.save(str(work))
        shutil.rmtree(checkpoints, ignore_errors=True)
        shutil.rmtree(work / TEACHER_CACHE, ignore_errors=True)
        write_json(work / STAGE_FILE, record)
        finish(work, output)
    trainer.accelerator.wait_for_everyone()
    return record


def train_simcse(
    model_dir: str | Path,
    corpus: Dataset,
    output: str | Path,
    loss_options: dict[str, Any] | None = None,
    training_options: dict[str, Any] | None = None,
    max_seq_length: int = MAX_SEQ_LENGTH,
    dev_file: str | Path | None = None,
    overwrite: bool = False,
    resume_from_checkpoint: str | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """Unsupervised SimCSE (a DistillCSE loss without distillation) of the model in ``model_dir``.

    ``loss_options`` may only set ``contrastive_temperature``; ``training_options`` are Trainer arguments
    (the seed among them) over :data:`TRAINING_DEFAULTS`.
    """
    output = Path(output)
    model_dir = check_model_dir(model_dir, "student")
    loss_options = dict(loss_options or {})
    config = stage_config("simcse", model_dir, corpus, max_seq_length, loss_options, training_options)
    args, evaluator, model = stage_setup(model_dir, corpus, output, training_options, dev_file)
    with loss_arguments():
        loss = GroupPDistillLoss(model, distillation_weight=0.0, gather_across_devices=True, **loss_options)
    describe(model, f"Unsupervised SimCSE of {model_name(model_dir)}", model_dir)
    with args.main_process_first(local=False, desc="output directory"):
        start(output, config, overwrite)
    return run_stage(
        model, corpus, loss, args, evaluator, output, config, max_seq_length, resume_from_checkpoint, callbacks
    )


def train_distill(
    model_dir: str | Path,
    teacher_dirs: Sequence[str | Path],
    corpus: Dataset,
    output: str | Path,
    weights: Sequence[float] | None = None,
    precompute: bool = True,
    cache_dir: str | Path | None = None,
    loss_options: dict[str, Any] | None = None,
    training_options: dict[str, Any] | None = None,
    max_seq_length: int = MAX_SEQ_LENGTH,
    dev_file: str | Path | None = None,
    overwrite: bool = False,
    resume_from_checkpoint: str | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """One DistillCSE run: the model in ``model_dir`` learns from the teachers in ``teacher_dirs``.

    With ``precompute``, the teachers encode the corpus once (cached in ``cache_dir``, by default inside the
    stage's work directory) and the loss reads a ``label`` column; otherwise they run on every batch.
    One teacher trains with :class:`~distillcse_st.losses.GroupPDistillLoss`, several with
    :class:`~distillcse_st.losses.MultiTeacherAvgLoss` (``weights``: one per teacher, default uniform).
    ``loss_options`` are keyword arguments of those losses.
    """
    output = Path(output)
    model_dir = check_model_dir(model_dir, "student")
    teacher_dirs = [check_model_dir(directory, "teacher") for directory in teacher_dirs]
    with loss_arguments():
        weights = resolve_weights(weights, len(teacher_dirs))
    loss_options = dict(loss_options or {})
    config = stage_config(
        "distill",
        model_dir,
        corpus,
        max_seq_length,
        loss_options,
        training_options,
        teachers=[str(directory) for directory in teacher_dirs],
        weights=weights,
        precompute=precompute,
    )
    args, evaluator, model = stage_setup(model_dir, corpus, output, training_options, dev_file)
    teachers = None if precompute else [load_model(directory, "teacher") for directory in teacher_dirs]
    with loss_arguments():
        if len(teacher_dirs) == 1:
            loss = GroupPDistillLoss(
                model, teacher=teachers and teachers[0], gather_across_devices=True, **loss_options
            )
        else:
            loss = MultiTeacherAvgLoss(
                model, teachers=teachers, weights=teachers and weights, gather_across_devices=True, **loss_options
            )
    label = "teacher" if len(teacher_dirs) == 1 else "teachers"
    names = ", ".join(model_name(directory) for directory in teacher_dirs)
    describe(model, f"DistillCSE student of {model_name(model_dir)}, {label}: {names}", model_dir)
    with args.main_process_first(local=False, desc="output directory"):
        work = start(output, config, overwrite)
    dataset = corpus
    if precompute:
        embeddings = cached_teacher_embeddings(
            corpus["text"], teacher_dirs, weights, cache_dir or work / TEACHER_CACHE, max_seq_length,
            args.distributed_state,
        )
        dataset = with_cached_labels(corpus, embeddings)
    return run_stage(
        model, dataset, loss, args, evaluator, output, config, max_seq_length, resume_from_checkpoint, callbacks
    )
