"""``distillcse prune``: a layer-pruned copy of a BERT-like SentenceTransformer."""

from __future__ import annotations

import argparse

from distillcse_st.commands.arguments import add_output_options

EPILOG = """\
example (the demo's student: the first 3 of all-MiniLM-L6-v2's 6 layers):
  distillcse prune --model all-MiniLM-L6-v2 --layers 0-2 --output minilm-l3"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="copy a BERT-like model keeping only some encoder layers",
        description="Save a copy of a BERT-like SentenceTransformer that keeps only the listed encoder layers "
        "(embeddings, pooling and other modules unchanged): a smaller student to distil into.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="SentenceTransformer model directory")
    parser.add_argument("--layers", required=True, metavar="LIST", help="layers to keep, e.g. 0,1,2 or 0-2")
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from distillcse_st.training.pruning import prune_model_dir

    output = prune_model_dir(args.model, args.layers, Path(args.output), args.overwrite)
    print(f"Saved the pruned model to {output}")
    return 0
