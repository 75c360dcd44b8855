"""The ``distillcse`` command line: a thin layer of sub-commands over the package's functions.

Each sub-command lives in ``distillcse_st.commands.<name>`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed arguments and returning an
exit code; ``distillcse_st.commands.arguments`` holds their shared option groups. Input errors
(:class:`~distillcse_st.errors.InputError`) are printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from distillcse_st.errors import InputError

COMMANDS = ("prune", "simcse", "distill", "self_train", "demo", "eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillcse",
        description="DistillCSE for sentence-transformers: training, self-training and MTEB STS evaluation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"distillcse_st.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"distillcse_st.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def setup_logging() -> None:
    """Show this package's progress messages (INFO) and only warnings from other libraries.

    In a multi-process run, the progress messages are those of the main process (``RANK`` 0 of the
    launcher, ``torchrun`` or ``accelerate launch``); the other processes show warnings only.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    main_process = int(os.environ.get("RANK", "0")) == 0
    logging.getLogger("distillcse_st").setLevel(logging.INFO if main_process else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging()
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        print(f"distillcse {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distillcse {args.command}: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
