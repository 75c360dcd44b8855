"""The authors' training settings (method.md), importable without loading torch."""

from typing import Any

TRAINING_DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-5,
    "per_device_train_batch_size": 64,
    "num_train_epochs": 1.0,
    "max_steps": -1,
    "warmup_steps": 0,
    "eval_steps": 125,
    "save_steps": 125,
    "logging_steps": 25,
    "save_total_limit": 2,
    "seed": 42,
}
"""lr 3e-5, batch 64, 1 epoch, STS-B dev every 125 steps, as ``SentenceTransformerTrainingArguments`` fields."""

MAX_SEQ_LENGTH = 32
"""The authors' maximum sequence length."""

COSMETIC_OPTIONS = ("disable_tqdm", "logging_steps", "save_total_limit")
"""Trainer arguments that do not change the trained model: left out of a run's settings, so that a run
can be resumed with other values of them."""


def result_settings(training_options: dict[str, Any] | None) -> dict[str, Any]:
    """The training options that shape the result, as recorded in ``run.json`` and compared on resume."""
    return {key: value for key, value in (training_options or {}).items() if key not in COSMETIC_OPTIONS}
