"""Training settings that cannot train, refused before any model loads.

Some values pass ``SentenceTransformerTrainingArguments`` and fail later inside the optimiser, the seeding or
the data loader (a negative learning rate, a seed of -1, 0 gradient accumulation steps); others train and
save nothing learnt (a batch of one, a learning rate of 0, no steps). Each is an
:class:`~distillcse_st.errors.InputError` naming the setting.
"""

from __future__ import annotations

import math

import torch
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from transformers import Trainer

from distillcse_st.errors import InputError

MAX_SEED = 2**32 - 1
"""numpy's largest seed, which the Trainer's ``set_seed`` passes on."""


def global_batch_size(args: SentenceTransformerTrainingArguments) -> int:
    """The batch of one step over all the run's processes."""
    return args.per_device_train_batch_size * args.world_size


def check_trainable(args: SentenceTransformerTrainingArguments) -> None:
    """Raise an ``InputError`` for the first setting of ``args`` that cannot train."""
    global_batch = global_batch_size(args)
    if global_batch < 2:
        raise InputError(
            f"the batch size must be at least 2, got {global_batch}: every DistillCSE loss is in-batch, and a "
            "batch of one sentence has nothing to contrast or distil (its loss is 0)"
        )
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise InputError(f"learning_rate must be a positive number, got {args.learning_rate}")
    if args.max_steps == 0 or args.max_steps < -1:
        raise InputError(f"max_steps must be positive, or -1 to train num_train_epochs epochs; got {args.max_steps}")
    if args.max_steps == -1 and not args.num_train_epochs > 0:
        raise InputError(f"num_train_epochs must be positive, got {args.num_train_epochs}")
    for name in ("eval_steps", "save_steps", "logging_steps", "gradient_accumulation_steps"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise InputError(f"{name} must be positive, got {value}")
    if args.save_total_limit is not None and args.save_total_limit < 1:
        raise InputError(f"save_total_limit must be at least 1 (or unset), got {args.save_total_limit}")
    if not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"seed must be between 0 and 2**32 - 1, got {args.seed}")
    check_optimizer(args)


def check_optimizer(args: SentenceTransformerTrainingArguments) -> None:
    """Build the Trainer's optimiser on one dummy parameter, so that its own checks (betas, eps, ...) run now."""
    optimizer_class, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    try:
        optimizer_class([torch.nn.Parameter(torch.zeros(1))], **optimizer_kwargs)
    except (TypeError, ValueError) as error:
        raise InputError(f"the optimiser ({args.optim.value}) refuses its settings: {error}") from None


def check_max_seq_length(max_seq_length: int) -> None:
    if max_seq_length < 1:
        raise InputError(f"max_seq_length must be at least 1 token, got {max_seq_length}")
