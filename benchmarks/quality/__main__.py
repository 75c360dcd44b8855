"""Quality benchmark: the DistillCSE ablation at CPU scale (issues 8, 15 and 27). Tables (``rows.ROWS``):

- A, compression: all-MiniLM-L6-v2 -> its first 3 layers, on Wikipedia sentences, STS7.
- B, self-training as unsupervised in-domain adaptation on STS-B train sentences (scores never read, minus
  every sentence of STS-B dev/test and SICK-R), STS-B test + SICK-R (STS12-16 share its sentences).
- C, cross-architecture distillation: all-mpnet-base-v2 -> the full all-MiniLM-L6-v2, Wikipedia, STS7.
- D, adapting an already strong model without labels: all-MiniLM-L6-v2 on table B's corpus.
- E, supervised pairs (SICK entailments, STS-B pairs scored >= 4; ``pairs.py``), ST's ways to use a teacher
  against ``InBatchDistillLoss``, STS7, in blocks named by student and teacher: ``E1-minilm``, ``E1-mpnet``
  (the 3-layer student), ``E2-mpnet``, ``E2-self`` (the full all-MiniLM-L6-v2).

Every run of a benchmark (``--steps/--K/--lr``) has the same steps, batch and max length; STS-B dev every
``eval_steps``, the best checkpoint kept (selected on dev only) and scored once on its table's tasks.
``--lr dev`` trains each row at the best STS-B dev lr of its family's sweep, a grid extended until its
best point is interior. Resumable: finished runs are files ``results/quality_runs-<tag>/<table>/<row>
[-seed<k>].json`` and are skipped; a run stopped midway resumes from its last checkpoint
(``benchmarks/cache/quality-steps<S>-K<K>/models/<run>.partial``). The queue (``queue.QUEUE``) is ordered by
importance; ``--runs`` runs a list of its runs instead, so that a second process (a second core) takes
other runs. A process that reaches a run another one is training waits for it (a lock per run), then
reads it back: a table B student trains any SimCSE teacher it lacks, so give a second process runs whose
teachers are trained or its own, or it spends that time waiting.

    python -m benchmarks.quality --steps 1000 --lr dev --tables AC   # issue 15's tables A and C (long)
    python -m benchmarks.quality --steps 600 --K 4 --lr dev --tables B
    python -m benchmarks.quality --report --steps 150                # rebuild results/quality-<tag>.{json,md}
    python -m benchmarks.quality --p-sweep --tables B                # STS-B dev sweep of Group-P's p
    python -m benchmarks.quality --steps 600 --K 4 --lr dev --tables B --runs vanilla-kd:2   # beside the queue
    python -m benchmarks.quality --steps 200 --lr dev --tables E1-minilm,E1-mpnet --threads 1  # table E
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch
from common import write_json

from .queue import parse_runs, parse_tables, plan, quiet_report, sweeps
from .report import report
from .rows import DEFAULT_LR, Settings
from .runner import p_sweep, run_row


def settings_from(args: argparse.Namespace) -> Settings:
    if args.lr == "dev":
        return Settings(args.steps, args.K, None, "chosen per row family on STS-B dev (lr-sweep.json)")
    lr = float(args.lr)
    return Settings(args.steps, args.K, lr, "fixed a priori" if lr == DEFAULT_LR else "set with --lr")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only rebuild the report and plots")
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--K", type=int, default=Settings.K)
    parser.add_argument("--lr", default=f"{DEFAULT_LR:g}",
                        help="learning rate of every trained row, or 'dev': each row at its family's best lr on "
                             "STS-B dev (lr-sweep.json, run first by the queue); each lr is its own benchmark")
    parser.add_argument("--tables", default="A",
                        help="tables to run, in order of priority: letters (AC) or comma-separated names "
                             "(E1-minilm,E2-mpnet)")
    parser.add_argument("--sweep", action="store_true", help="only the STS-B dev lr sweeps of --tables")
    parser.add_argument("--p-sweep", action="store_true", help="only the STS-B dev sweep of Group-P's p of --tables")
    parser.add_argument("--runs", nargs="+", metavar="ROW:SEED",
                        help="only these runs of the one table in --tables, in order (finished ones are skipped): "
                             "a second process takes other runs of the queue, e.g. one per core")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    try:
        tables = parse_tables(args.tables)
        if args.runs and len(tables) != 1:
            raise ValueError("--runs takes one table in --tables")
        runs = parse_runs(tables[0], args.runs) if args.runs else []
    except ValueError as error:
        parser.error(str(error))
    settings = settings_from(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("sentence_transformers", "transformers", "mteb", "datasets", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.report:
        if settings.lr is not None and not (settings.runs / "A" / "lr-selection.json").is_file():
            write_json(settings.runs / "A" / "lr-selection.json",
                       {"chosen_lr": settings.lr, "tuned": False, "note": f"{settings.lr_source}; used for every "
                                                                          "trained row"})
        if args.sweep:
            for table in tables:
                sweeps(settings, table)
        elif args.p_sweep:
            for table in tables:
                p_sweep(settings, table)
        else:
            listed = [lambda r=row, s=seed: run_row(settings, tables[0], r, s) for row, seed in runs]
            for step in listed or plan(settings, tables):
                step()
                quiet_report(settings)
    print(report(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
