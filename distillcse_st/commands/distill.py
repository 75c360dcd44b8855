"""``distillcse distill``: one DistillCSE training run of a student against one or more teachers."""

from __future__ import annotations

import argparse

from distillcse_st.commands.arguments import (
    add_run_options,
    corpus_from_args,
    loss_options,
    training_options,
)

EPILOG = """\
examples:
  distillcse distill --model bert-base-st --teacher simcse-seed1 --corpus wiki1m.txt --output distillcse-gp
  distillcse distill --model bert-base-st --teacher simcse-seed1 --teacher simcse-seed2 --weights 0.5,0.5 \\
      --corpus wiki1m.txt --output distillcse-2t"""


def _weights(text: str) -> list[float]:
    try:
        return [float(weight) for weight in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="train a student with the DistillCSE losses against teacher models",
        description="One DistillCSE run: SimCSE plus distillation of the teachers' (averaged) in-batch "
        "similarity distribution, with Group-P shuffling. Defaults: the DistillCSE authors' settings. "
        "Rerun the same command to resume an interrupted run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="SentenceTransformer student to train")
    parser.add_argument(
        "--teacher",
        dest="teachers",
        action="append",
        required=True,
        metavar="DIR",
        help="SentenceTransformer teacher; repeat for teacher components (similarities averaged)",
    )
    parser.add_argument("--weights", type=_weights, metavar="W1,W2,...", help="teacher weights (default: 1/K each)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--precompute",
        dest="precompute",
        action="store_true",
        default=True,
        help="encode the corpus with the teachers once, cached on disk (default)",
    )
    mode.add_argument("--online", dest="precompute", action="store_false", help="run the teachers on every batch")
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="where precomputed teacher embeddings are cached (default: inside the run)"
    )
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distillcse_st.training.stages import train_distill

    corpus = corpus_from_args(args)
    record = train_distill(
        args.model,
        args.teachers,
        corpus,
        args.output,
        args.weights,
        args.precompute,
        args.cache_dir,
        loss_options(args),
        training_options(args),
        args.max_seq_length,
        args.dev_file,
        args.overwrite,
        args.resume_from_checkpoint,
    )
    print(f"Saved the DistillCSE model to {args.output} (STS-B dev Spearman {record['dev']:.2f})")
    return 0
