"""What the sub-commands share: their parser, and the training options (authors' defaults, Trainer pass-through).

Every option of :func:`add_training_options` is a field of ``SentenceTransformerTrainingArguments`` and
goes to it unchanged (``--training-arg KEY=VALUE`` reaches any other field); :func:`add_loss_options` are
the keyword arguments of the DistillCSE losses.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distillcse_st.errors import InputError
from distillcse_st.training.defaults import MAX_SEQ_LENGTH, TRAINING_DEFAULTS

if TYPE_CHECKING:
    from datasets import Dataset

TRAINING_OPTIONS: dict[str, tuple[type, str]] = {
    "learning_rate": (float, "peak learning rate"),
    "per_device_train_batch_size": (
        int,
        "sentences per batch (in-batch negatives and distillation candidates); on several processes, the global "
        "batch, split between them",
    ),
    "num_train_epochs": (float, "epochs over the corpus"),
    "max_steps": (int, "stop after this many steps (overrides epochs; -1: off)"),
    "warmup_steps": (float, "linear warm-up steps (a float < 1: a fraction of all steps)"),
    "eval_steps": (int, "evaluate on STS-B dev every N steps (the best checkpoint is kept)"),
    "save_steps": (int, "save a checkpoint every N steps (a multiple of --eval-steps)"),
    "logging_steps": (int, "log the training loss every N steps"),
    "save_total_limit": (int, "checkpoints kept on disk (the best one always is)"),
    "seed": (int, "random seed of initialisation, data order, dropout and Group-P"),
}
"""Trainer arguments with an option of their own: name -> (type, help)."""

FLAGS = {"bf16": "bfloat16 mixed precision", "fp16": "float16 mixed precision (GPU)"}


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    run: Callable[[argparse.Namespace], int],
    model: str | None = None,
    epilog: str | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """Sub-command ``name`` running ``run``, with a ``--model DIR`` option helped by ``model`` if given.

    With an ``epilog`` (examples), the description and epilog keep their line breaks.
    """
    formatter = argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter
    parser = subparsers.add_parser(name, epilog=epilog, formatter_class=formatter, **kwargs)
    parser.set_defaults(func=run)
    if model is not None:
        parser.add_argument("--model", required=True, metavar="DIR", help=model)
    return parser


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_corpus_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("corpus")
    group.add_argument(
        "--corpus",
        required=required,
        metavar="FILE",
        help=".txt[.gz] (a sentence a line), .jsonl[.gz], .csv/.tsv[.gz] or a saved `datasets` directory",
    )
    group.add_argument("--text-field", metavar="NAME", help="text field of a .jsonl corpus")
    group.add_argument("--column", metavar="NAME", help="text column of a .csv/.tsv corpus or datasets directory")
    group.add_argument("--max-sentences", type=int, metavar="N", help="use only the first N sentences")


def corpus_from_args(args: argparse.Namespace) -> Dataset:
    """The corpus named by the options of :func:`add_corpus_options`."""
    from distillcse_st.training.corpus import load_corpus

    return load_corpus(args.corpus, args.text_field, args.column, args.max_sentences)


def add_run_options(parser: argparse.ArgumentParser, distillation: bool = True) -> None:
    """The corpus, output, loss and training option groups of a command that trains on a corpus."""
    add_corpus_options(parser)
    add_output_options(parser)
    add_loss_options(parser, distillation=distillation)
    add_training_options(parser)


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the training functions that the output, loss and training options give."""
    return {
        "output": args.output,
        "loss_options": loss_options(args),
        "training_options": training_options(args),
        "max_seq_length": args.max_seq_length,
        "dev_file": args.dev_file,
        "overwrite": args.overwrite,
    }


def add_output_options(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--output",
        required=default is None,
        default=default,
        metavar="DIR",
        help="where the model goes; the run works in DIR.partial until done"
        + (f" (default: {default})" if default else ""),
    )
    group.add_argument(
        "--overwrite", action="store_true", help="replace DIR, or an unfinished run with other settings"
    )


def add_training_options(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """Trainer options defaulting to the authors' settings (``defaults`` overrides some, e.g. for the demo)."""
    defaults = {**TRAINING_DEFAULTS, "max_seq_length": MAX_SEQ_LENGTH, **defaults}
    group = parser.add_argument_group("training (passed to SentenceTransformerTrainingArguments)")
    for name, (kind, text) in TRAINING_OPTIONS.items():
        flags = ["--batch-size", _option(name)] if name == "per_device_train_batch_size" else [_option(name)]
        group.add_argument(
            *flags, dest=name, type=kind, default=defaults[name], metavar="N", help=f"{text} (default: %(default)s)"
        )
    for name, text in FLAGS.items():
        group.add_argument(_option(name), dest=name, action="store_true", help=text)
    group.add_argument(
        "--training-arg",
        dest="training_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other SentenceTransformerTrainingArguments field, VALUE as JSON or a string (repeatable)",
    )
    group.add_argument(
        "--resume-from-checkpoint",
        metavar="DIR",
        help="checkpoint to resume from (default: the last one of an unfinished run in OUTPUT.partial)",
    )
    group.add_argument(
        "--max-seq-length",
        type=int,
        default=defaults["max_seq_length"],
        metavar="N",
        help="train with sentences truncated to N tokens, student and precomputed teachers; the saved model "
        "keeps its base's maximum length (default: %(default)s)",
    )
    group.add_argument(
        "--dev-file",
        metavar="FILE",
        help="STS jsonl(.gz) for the dev evaluation (default: the packaged STS-B dev set)",
    )
    group.add_argument("--no-progress", dest="disable_tqdm", action="store_true", help="no progress bars")


def add_simcse_learning_rate(parser: argparse.ArgumentParser, default: float | None = None) -> None:
    """``--simcse-learning-rate``: round 0's own learning rate in a recipe that trains SimCSE, then distils."""
    parser.add_argument(
        "--simcse-learning-rate",
        type=float,
        default=default,
        metavar="LR",
        help="learning rate of the SimCSE round (default: "
        + (f"{default})" if default is not None else "--learning-rate)"),
    )


def simcse_training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The SimCSE round's Trainer arguments that differ from the other rounds'."""
    return {} if args.simcse_learning_rate is None else {"learning_rate": args.simcse_learning_rate}


def _json_or_string(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The SentenceTransformerTrainingArguments fields given by the parsed options."""
    options: dict[str, Any] = {name: getattr(args, name) for name in TRAINING_OPTIONS}
    options.update({name: True for name in FLAGS if getattr(args, name)})
    if args.disable_tqdm:
        options["disable_tqdm"] = True
    for item in args.training_args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--training-arg wants KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = _json_or_string(value)
    return options


def add_loss_options(parser: argparse.ArgumentParser, distillation: bool = True) -> None:
    """The DistillCSE loss options with the paper's defaults (only the SimCSE temperature without distillation)."""
    group = parser.add_argument_group("loss (DistillCSE paper defaults)")
    group.add_argument(
        "--contrastive-temperature",
        type=float,
        default=0.05,
        metavar="T",
        help="SimCSE temperature (default: %(default)s)",
    )
    if not distillation:
        return
    group.add_argument(
        "--student-temperature",
        type=float,
        default=0.025,
        metavar="T",
        help="student temperature (default: %(default)s)",
    )
    group.add_argument(
        "--teacher-temperature",
        type=float,
        default=0.0125,
        metavar="T",
        help="teacher temperature (default: %(default)s)",
    )
    group.add_argument(
        "--distillation-weight",
        type=float,
        default=1.0,
        metavar="LAMBDA",
        help="weight lambda of the distillation term (default: %(default)s)",
    )
    group.add_argument(
        "--contrastive-weight",
        type=float,
        default=1.0,
        metavar="W",
        help="weight of the SimCSE term; 0: distillation only (default: %(default)s)",
    )
    group.add_argument(
        "--group-p",
        type=_group_p,
        default=0.1,
        metavar="P|none",
        help="Group-P mass; 'none': vanilla distillation (default: %(default)s)",
    )
    group.add_argument(
        "--group-size", type=int, metavar="N", help="fixed-size groups instead of --group-p (sets --group-p none)"
    )
    group.add_argument(
        "--group-temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="temperature sizing the Group-P groups (default: 1, the authors')",
    )
    group.add_argument(
        "--divergence", choices=("ce", "kl", "js"), default="ce", help="distillation divergence (default: %(default)s)"
    )


def _group_p(value: str) -> float | None:
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'none', got {value!r}") from None


LOSS_OPTIONS = (
    "contrastive_temperature",
    "student_temperature",
    "teacher_temperature",
    "distillation_weight",
    "contrastive_weight",
    "group_p",
    "group_size",
    "group_temperature",
    "divergence",
)


def loss_options(args: argparse.Namespace) -> dict[str, Any]:
    """The loss keyword arguments given by the parsed options."""
    options = {name: getattr(args, name) for name in LOSS_OPTIONS if hasattr(args, name)}
    if options.get("group_size") is not None:
        options["group_p"] = None
    elif "group_size" in options:
        del options["group_size"]
    return options
