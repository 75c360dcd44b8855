"""``distillcse eval``: MTEB STS evaluation of a saved SentenceTransformer."""

from __future__ import annotations

import argparse
from pathlib import Path

from distillcse_st.commands.arguments import add_command
from distillcse_st.errors import InputError
from distillcse_st.evaluation.sts_tasks import DATA_DIR_ENV, STS7
from distillcse_st.models import check_model_dir

DESCRIPTION = f"""\
Evaluate a saved SentenceTransformer on MTEB STS tasks with mteb.evaluate and print MTEB's main
score (Spearman correlation of cosine similarities) x 100 per task and on average.

Offline, the tasks read MTEB's data from DATA_DIR/<task>.jsonl (one JSON object per line with
sentence1, sentence2, score), keeping MTEB's task names and metadata. Without --data-dir (and
without ${DATA_DIR_ENV}) mteb's own tasks are downloaded from the Hugging Face hub.
Writes MTEB's result files under OUTPUT/results/ and a summary to OUTPUT/summary.json."""

EPILOG = """\
examples:
  distillcse eval runs/distillcse-bert --data-dir data/sts
  distillcse eval runs/distillcse-bert --tasks STSBenchmark,SICK-R --data-dir data/sts --output eval/run1"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "eval",
        run,
        help="evaluate a model on the MTEB STS tasks (STS12-16, STSBenchmark, SICK-R)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="directory of a saved SentenceTransformer")
    parser.add_argument(
        "--tasks",
        default="sts7",
        help=f"'sts7' ({', '.join(STS7)}) or comma-separated MTEB task names (default: sts7)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"directory with <task>.jsonl files (default: ${DATA_DIR_ENV}; unset: download from the hub)",
    )
    parser.add_argument(
        "--output",
        metavar="DIR",
        help="where to write MTEB result files and summary.json (default: MODEL_DIR/mteb-sts)",
    )
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="encoding batch size (default: 64)")


def run(args: argparse.Namespace) -> int:
    from distillcse_st.evaluation.mteb_eval import evaluate_sts, format_table

    model_dir = check_model_dir(args.model_dir)  # before the STS data: a typo in the path is the error shown
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    output = Path(args.output) if args.output else model_dir / "mteb-sts"
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create output directory {output}: {error.strerror}") from None
    summary = evaluate_sts(
        model_dir, tasks=args.tasks, data_dir=args.data_dir, output_dir=output, batch_size=args.batch_size
    )
    print(format_table(summary["scores"]))
    print(f"\nMTEB results: {summary['results_dir']}\nsummary: {output / 'summary.json'}")
    return 0
