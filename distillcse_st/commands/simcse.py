"""``distillcse simcse``: unsupervised SimCSE training (round 0 of DistillCSE self-training)."""

from __future__ import annotations

import argparse

from distillcse_st.commands.arguments import add_command, add_run_options, corpus_from_args, run_options

EPILOG = """\
example:
  distillcse simcse --model bert-base-uncased-st --corpus wiki1m.txt --output simcse-seed1 --seed 1"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "simcse",
        run,
        model="SentenceTransformer model to train",
        help="train a model with unsupervised SimCSE (dropout views as positives)",
        description="Unsupervised SimCSE on a corpus of sentences with SentenceTransformerTrainer, evaluated on "
        "STS-B dev every --eval-steps steps, keeping the best checkpoint. Defaults: the SimCSE/DistillCSE "
        "authors' settings. Rerun the same command to resume an interrupted run.",
        epilog=EPILOG,
    )
    add_run_options(parser, distillation=False)


def run(args: argparse.Namespace) -> int:
    from distillcse_st.training.stages import train_simcse

    corpus = corpus_from_args(args)
    record = train_simcse(args.model, corpus, resume_from_checkpoint=args.resume_from_checkpoint, **run_options(args))
    print(f"Saved the SimCSE model to {args.output} (STS-B dev Spearman {record['dev']:.2f})")
    return 0
