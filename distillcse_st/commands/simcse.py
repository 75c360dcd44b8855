"""``distillcse simcse``: unsupervised SimCSE training (round 0 of DistillCSE self-training)."""

from __future__ import annotations

import argparse

from distillcse_st.commands.arguments import (
    add_run_options,
    corpus_from_args,
    loss_options,
    training_options,
)

EPILOG = """\
example:
  distillcse simcse --model bert-base-uncased-st --corpus wiki1m.txt --output simcse-seed1 --seed 1"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simcse",
        help="train a model with unsupervised SimCSE (dropout views as positives)",
        description="Unsupervised SimCSE on a corpus of sentences with SentenceTransformerTrainer, evaluated on "
        "STS-B dev every --eval-steps steps, keeping the best checkpoint. Defaults: the SimCSE/DistillCSE "
        "authors' settings. Rerun the same command to resume an interrupted run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="SentenceTransformer model to train")
    add_run_options(parser, distillation=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distillcse_st.training.stages import train_simcse

    corpus = corpus_from_args(args)
    record = train_simcse(
        args.model,
        corpus,
        args.output,
        loss_options(args),
        training_options(args),
        args.max_seq_length,
        args.dev_file,
        args.overwrite,
        args.resume_from_checkpoint,
    )
    print(f"Saved the SimCSE model to {args.output} (STS-B dev Spearman {record['dev']:.2f})")
    return 0
