from __future__ import annotations

import os
from pathlib import Path

import pytest

from distillcse_st.training import outputs
from distillcse_st.training.outputs import read_json, write_json


def test_write_json_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "result.json"
    write_json(path, {"a": (1, 2), "p": Path("x")})
    assert read_json(path) == {"a": [1, 2], "p": "x"}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_write_json_from_two_processes_interleaved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second process writes the same file between the first one's write and rename: both succeed."""
    path = tmp_path / "result.json"
    real_replace, other_pid = os.replace, os.getpid() + 1
    interleaved = []

    def replace_after_other_process(src: Path, dst: Path) -> None:
        if not interleaved:
            interleaved.append(src)
            with monkeypatch.context() as other:
                other.setattr(outputs.os, "getpid", lambda: other_pid)
                write_json(path, {"writer": "other"})
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace_after_other_process)
    write_json(path, {"writer": "first"})
    assert interleaved and read_json(path) == {"writer": "first"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
