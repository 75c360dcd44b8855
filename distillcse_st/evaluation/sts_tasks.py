"""MTEB STS tasks that read their data from local jsonl files instead of the Hugging Face hub.

A local task is a subclass of the task class mteb registers under that name: it keeps mteb's own
``TaskMetadata`` (name, dataset revision, splits, ``main_score``), score range and scoring code, and
only replaces :meth:`load_data`. Each split is read from ``DATA_DIR/<name><suffix>.jsonl[.gz]``
(``STS12.jsonl`` for ``test``, ``STSBenchmark-dev.jsonl`` for ``validation``, ``...-train.jsonl``
for ``train``); every line is ``{"sentence1": str, "sentence2": str, "score": number, ...}``.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillcse_st.errors import InputError

if TYPE_CHECKING:
    from mteb.abstasks.abstask import AbsTask
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.timing import TimingStack

STS7: tuple[str, ...] = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICK-R")
"""The seven English STS tasks of SimCSE/DistillCSE, by their MTEB names."""

DATA_DIR_ENV = "DISTILLCSE_STS_DIR"
"""Environment variable naming the default local data directory."""

SPLIT_SUFFIXES = {"test": "", "validation": "-dev", "train": "-train"}


def read_sts_jsonl(path: str | Path) -> dict[str, list[Any]]:
    """Read and validate an STS jsonl(.gz) file into columns ``sentence1``, ``sentence2``, ``score``.

    Blank lines are skipped; other fields (e.g. ``subset``) are ignored. Raises :class:`InputError`
    naming the file and line number for any malformed line, and for a missing or empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"STS data file not found: {path}")
    columns: dict[str, list[Any]] = {"sentence1": [], "sentence2": [], "score": []}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            for key in ("sentence1", "sentence2"):
                if not isinstance(row.get(key), str):
                    raise InputError(f"{path}:{number}: '{key}' must be a string")
            score = row.get("score")
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise InputError(f"{path}:{number}: 'score' must be a finite number, got {score!r}")
            columns["sentence1"].append(row["sentence1"])
            columns["sentence2"].append(row["sentence2"])
            columns["score"].append(float(score))
    if not columns["score"]:
        raise InputError(f"{path}: no sentence pairs")
    return columns


def split_file(data_dir: str | Path, task_name: str, split: str) -> Path:
    """Path of ``task_name``'s ``split`` in ``data_dir`` (``.jsonl`` preferred over ``.jsonl.gz``)."""
    if split not in SPLIT_SUFFIXES:
        raise InputError(f"{task_name}: no local file naming scheme for split '{split}'")
    stem = Path(data_dir) / f"{task_name}{SPLIT_SUFFIXES[split]}.jsonl"
    gz = stem.with_name(stem.name + ".gz")
    return gz if gz.is_file() and not stem.is_file() else stem


class _LocalData:
    """Mixin replacing an mteb STS task's hub download with reading jsonl files from ``data_dir``."""

    def __init__(self, data_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)

    def load_data(self, num_proc: int | None = None, *, timer: TimingStack | None = None, **kwargs: Any) -> None:
        """Load every evaluation split from its jsonl file (``num_proc`` is unused)."""
        from datasets import Dataset, DatasetDict
        from mteb.timing import TimingStack

        if self.data_loaded:
            return
        timer = timer or TimingStack()
        with timer("Data loading", log_message=f"Loading {self.metadata.name} from {self.data_dir}..."):
            self.dataset = DatasetDict(
                {
                    split: Dataset.from_dict(read_sts_jsonl(split_file(self.data_dir, self.metadata.name, split)))
                    for split in self.eval_splits
                }
            )
        self.data_loaded = True


@functools.cache
def _local_class(base: type[AbsTaskSTS]) -> type[AbsTaskSTS]:
    doc = f"{base.__name__} (MTEB task '{base.metadata.name}') read from local jsonl files."
    return type(f"Local{base.__name__}", (_LocalData, base), {"__doc__": doc, "__module__": __name__})


def mteb_task(name: str) -> AbsTask:
    """mteb's own task registered as ``name`` (its data comes from the hub)."""
    import mteb

    try:
        return mteb.get_task(name)
    except KeyError as error:
        detail = str(error.args[0]) if error.args else ""
        hint = f"; {detail[detail.index('Did you mean'):]}" if "Did you mean" in detail else ""
        raise InputError(f"unknown task {name!r}{hint} (use 'sts7' or MTEB task names)") from None


def local_sts_task(name: str, data_dir: str | Path) -> AbsTaskSTS:
    """MTEB's STS task ``name`` with its data already read (and validated) from ``data_dir``."""
    from mteb.abstasks.sts import AbsTaskSTS

    base = type(mteb_task(name))
    if not issubclass(base, AbsTaskSTS):
        raise InputError(f"task {name!r} is not an STS task; local data is supported for STS tasks only")
    task = _local_class(base)(data_dir=data_dir)
    for split in task.eval_splits:
        path = split_file(data_dir, name, split)
        if not path.is_file():
            raise InputError(f"{name}: data file not found: {path}")
    task.load_data()
    return task


def task_names(tasks: str) -> list[str]:
    """Expand ``"sts7"`` and comma-separated names into a list of unique task names."""
    names: list[str] = []
    for item in (item.strip() for item in tasks.split(",")):
        names.extend(STS7 if item.lower() == "sts7" else [item] if item else [])
    return list(dict.fromkeys(names))


def default_data_dir(data_dir: str | Path | None = None) -> str | Path | None:
    """``data_dir`` if given, else ``$DISTILLCSE_STS_DIR`` if set, else None (use the hub)."""
    return data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None


def resolve_tasks(
    tasks: str | Sequence[str | AbsTask] = "sts7", data_dir: str | Path | None = None
) -> list[AbsTask]:
    """Task objects for ``tasks``: ``"sts7"``, task names (also comma-separated) or task objects.

    With a ``data_dir`` (default: ``$DISTILLCSE_STS_DIR``) names become local STS tasks reading
    jsonl from it; without one they are mteb's own tasks, downloaded from the hub.
    """
    data_dir = default_data_dir(data_dir)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InputError(f"STS data directory not found: {data_dir}")
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    if data_dir is None and any(isinstance(item, str) for item in items):
        _require_hub()
    resolved: list[AbsTask] = []
    for item in items:
        if not isinstance(item, str):
            resolved.append(item)
            continue
        for name in task_names(item):
            resolved.append(local_sts_task(name, data_dir) if data_dir else mteb_task(name))
    if not resolved:
        raise InputError("no task given")
    return resolved


def _require_hub() -> None:
    from datasets import config

    if config.HF_HUB_OFFLINE:
        raise InputError(
            f"no STS data directory given and the Hugging Face hub is offline; pass a data directory "
            f"(--data-dir or ${DATA_DIR_ENV}) holding <task>.jsonl files"
        )
