"""Each table's run queue, most important first: rerunning it skips what is finished, so stopping it at any
point leaves the most useful rows."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Sequence

from .report import report
from .rows import E_BLOCKS, ROWS, SWEEP_ROWS, Settings
from .runner import eval_only, knob_sweep, lr_sweep_step, p_sweep, run_row

logger = logging.getLogger("quality")

Steps = list[tuple[str, tuple[str, ...], tuple[int, ...]]]  # (step, rows, seeds), first things first

# Table E's blocks: MNRL alone and ours over it (vanilla KD's lr swept beside MNRL's, then group_p and the weight
# chosen on dev: "knobs"), ST's multi-objective route and ours on top of it, then GISTEmbedLoss and ours over it,
# the cached losses at batch 256, MarginMSELoss on the (small) triplet variant, and last the live teacher: the same
# loss as the precomputed row, whose numbers it repeats (within 1e-4 wherever both ran)
E_QUEUE: Steps = [("sweep", ("mnrl", "mnrl+kd"), ()),
                  ("eval", ("initial-student", "teacher"), ()),
                  ("rows", ("mnrl", "mnrl+kd"), (0,)),
                  ("knobs", (), ()),
                  ("rows", ("mnrl+kd-dev",), (0,)),
                  ("sweep", ("mnrl|embed-distill",), ()),
                  ("rows", ("mnrl|embed-distill",), (0,)),
                  ("rows", ("mnrl", "mnrl+kd-dev", "mnrl|embed-distill", "mnrl+kd"), (1, 2)),
                  ("rows", ("mnrl+kd|embed-distill",), (0, 1, 2)),
                  ("sweep", ("gist",), ()),
                  ("rows", ("gist", "gist+kd"), (0, 1, 2)),
                  ("sweep", ("cached-mnrl",), ()),
                  ("rows", ("cached-mnrl", "cached-mnrl+kd"), (0, 1, 2)),
                  ("sweep", ("margin-mse",), ()),
                  ("rows", ("margin-mse",), (0, 1, 2)),
                  ("rows", ("mnrl+kd-live",), (0, 1, 2))]
QUEUE: dict[str, Steps] = {
    "A": [("sweep", ("embed-distill-cosine", "embed-distill+group-p"), ()),
          ("eval", ("initial-student", "teacher"), ()),
          ("rows", ("embed-distill-cosine", "embed-distill+group-p-balanced", "embed-distill+group-p"), (0,)),
          # the baseline and the stacked row the target compares it with
          ("rows", ("embed-distill-cosine", "embed-distill+group-p-balanced"), (1, 2)),
          ("rows", ("embed-distill+vanilla-kd", "mse"), (0,)),
          ("sweep", ("group-p-no-contrastive",), ()),
          ("rows", ("group-p-no-contrastive",), (0,)),
          ("rows", ("embed-distill+group-p", "embed-distill+vanilla-kd", "mse", "group-p-no-contrastive"), (1, 2))],
    "C": [("sweep", ("embed-distill-cosine", "embed-distill+group-p", "group-p-no-contrastive"), ()),
          ("eval", ("initial-student", "teacher"), ()),
          ("rows", ("embed-distill+group-p", "embed-distill-cosine", "group-p-no-contrastive", "multi-teacher"),
           (0, 1, 2)),
          # a second ST baseline, after the rows: ST's PCA route to the student's width
          ("sweep", ("embed-distill-pca",), ()),
          ("rows", ("embed-distill-pca",), (0, 1, 2))],
    "B": [("sweep", ("simcse",), ()),  # first: the distilled rows' SimCSE teachers train at its lr
          ("sweep", ("group-p",), ()),
          ("p-sweep", (), ()),
          ("eval", ("initial-student",), ()),
          ("rows", ("simcse", "distillcse-devp", "group-p-devp", "vanilla-kd"), (0, 1, 2))],
    "D": [("sweep", SWEEP_ROWS["D"], ()),
          ("eval", ("initial-student",), ()),
          ("rows", ("simcse", "group-p-self"), (0, 1, 2))],
    **{block: E_QUEUE for block in E_BLOCKS},
}


def sweep(settings: Settings, table: str, rows: tuple[str, ...]) -> None:
    """The lr sweeps of ``rows``, one point of each in turn, until every grid is done."""
    while any([lr_sweep_step(settings, table, row) for row in rows]):
        quiet_report(settings)


def sweeps(settings: Settings, table: str) -> None:
    """Every lr sweep of the table's queue, in its order (``--sweep``)."""
    for step, rows, _ in QUEUE[table]:
        if step == "sweep":
            sweep(settings, table, rows)


def parse_tables(text: str) -> list[str]:
    """``--tables``: letters of tables A-D in order of priority (``AC``), or names separated by commas
    (``E1-minilm,E2-mpnet,B``)."""
    tables = [name for part in text.split(",") for name in ([part] if part in ROWS else part.upper())]
    if not tables or not set(tables) <= set(ROWS):
        raise ValueError(f"--tables takes letters of A-D or comma-separated names of {', '.join(ROWS)}: {text!r}")
    return tables


def plan(settings: Settings, tables: Sequence[str]) -> list[Callable[[], object]]:
    """The run queue of ``tables`` (in that order), most important first; rerunning skips what is finished."""
    queue: list[Callable[[], object]] = []
    for table in tables:
        for step, rows, seeds in QUEUE[table]:
            if step == "sweep" and settings.lr is None:
                queue.append(lambda t=table, r=rows: sweep(settings, t, r))
            elif step == "p-sweep":
                queue.append(lambda t=table: p_sweep(settings, t))
            elif step == "knobs":
                queue.append(lambda t=table: knob_sweep(settings, t))
            elif step == "eval":
                queue += [lambda t=table, r=row: eval_only(settings, t, r) for row in rows]
            elif step == "rows":
                queue += [lambda t=table, r=row, s=seed: run_row(settings, t, r, s) for seed in seeds for row in rows]
    return queue


def parse_runs(table: str, items: list[str]) -> list[tuple[str, int]]:
    """``ROW:SEED`` items of ``--runs`` as (row, seed) of a trained row of ``table``."""
    trained = [name for name, spec in ROWS[table].items() if spec.loss is not None]
    runs = []
    for item in items:
        row, _, seed = item.partition(":")
        if row not in trained or not seed.isdigit():
            raise ValueError(f"--runs takes ROW:SEED with a trained row of table {table} ({', '.join(trained)}), "
                             f"got {item!r}")
        runs.append((row, int(seed)))
    return runs


def quiet_report(settings: Settings) -> None:
    """Rebuild the report after a run, so that a stopped queue leaves its tables up to date."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            report(settings)
    except Exception as error:  # noqa: BLE001
        logger.warning("report failed: %s", error)
