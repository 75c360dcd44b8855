"""Output directories that only appear when complete: work in ``OUTPUT.partial``, rename when done.

A run writes its checkpoints, caches and final files into ``OUTPUT.partial/`` next to ``OUTPUT``, together
with ``run.json``, the run's settings. Running the same command again resumes there; a run with other
settings refuses to touch it unless told to overwrite. When the run finishes, the directory is renamed
to ``OUTPUT`` in one step, so a half-written model never sits at ``OUTPUT``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from distillcse_st.errors import InputError

RUN_FILE = "run.json"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (temp file + rename).

    The temp file is named after the process, so processes writing the same ``path`` never rename
    each other's file: the last complete write wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def normalized(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from JSON (tuples become lists, paths strings), for comparisons."""
    return json.loads(json.dumps(config, default=str))


def partial_dir(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def check_run_dir(directory: Path, config: dict[str, Any], overwrite: bool) -> None:
    """Make ``directory`` hold this run: create it, or accept it if its ``run.json`` matches ``config``.

    A directory of another run (other settings, or no ``run.json`` but files) is an error unless
    ``overwrite``, which deletes it first.
    """
    run_file = directory / RUN_FILE
    if directory.exists() and any(directory.iterdir()):
        if run_file.is_file() and read_json(run_file) == normalized(config):
            return
        if not overwrite:
            raise InputError(f"{directory} holds another run (different settings); use --overwrite to replace it")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(run_file, normalized(config))


def start(output: Path, config: dict[str, Any], overwrite: bool) -> Path:
    """The work directory of a run that writes ``output``; refuses an existing ``output`` unless ``overwrite``."""
    if output.exists() and (output.is_file() or any(output.iterdir())):
        if not overwrite:
            raise InputError(f"{output} already exists; use --overwrite to replace it")
    work = partial_dir(output)
    check_run_dir(work, config, overwrite)
    return work


def finish(work: Path, output: Path) -> None:
    """Move the finished work directory to ``output`` (replacing what ``start`` agreed to overwrite)."""
    if output.is_dir():
        shutil.rmtree(output)
    elif output.exists():
        output.unlink()
    os.replace(work, output)
