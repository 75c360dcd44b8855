"""``distillcse self-train``: the whole DistillCSE self-training recipe, resumable."""

from __future__ import annotations

import argparse

from distillcse_st.commands.arguments import (
    add_command,
    add_run_options,
    add_simcse_learning_rate,
    corpus_from_args,
    run_options,
    simcse_training_options,
)

EPILOG = """\
example (4 SimCSE teacher components, then 2 rounds of distillation):
  distillcse self-train --model bert-base-uncased-st --corpus wiki1m.txt --components 4 --rounds 2 --output selftrain

OUTPUT gets round0-simcse1..K/, round1-distill/, ... (each an ST model with stage.json), teacher_cache/,
summary.json and dev_scores.png. Rerun the same command to resume: finished stages are skipped."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "self-train",
        run,
        model="base SentenceTransformer (student init)",
        help="the whole recipe: K SimCSE teacher components, then rounds of DistillCSE",
        description="DistillCSE self-training from a base model (e.g. a raw BERT with mean pooling): round 0 "
        "trains K unsupervised SimCSE components with seeds SEED..SEED+K-1; round 1 distils their averaged "
        "similarities into a fresh student; each further round distils the previous student. Every stage is "
        "saved with its STS-B dev score; the run ends with a summary table and a plot.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--components", type=int, default=2, metavar="K", help="SimCSE teacher components (default: 2)"
    )
    parser.add_argument("--rounds", type=int, default=1, metavar="R", help="distillation rounds (default: 1)")
    add_run_options(parser)
    add_simcse_learning_rate(parser)


def run(args: argparse.Namespace) -> int:
    from distillcse_st.training.self_train import self_train

    corpus = corpus_from_args(args)
    summary = self_train(
        args.model,
        corpus,
        components=args.components,
        rounds=args.rounds,
        simcse_training_options=simcse_training_options(args),
        **run_options(args),
    )
    print(f"\n{summary['table']}\nFinal model: {summary['final_model']}\nPlot: {summary['plot']}")
    return 0
