"""Reading UTF-8 text and JSON-lines files, plain or gzipped, with errors that name the file and line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distillcse_st.errors import InputError


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 (optionally gzipped) file, naming the line of a decoding error."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            for number, raw in enumerate(file, start=1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    raise InputError(f"{path}: line {number} is not valid UTF-8 ({error.reason})") from None
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: cannot read the file ({error})") from None


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(line number, JSON object)`` of a JSON-lines file, ``None`` for a blank line; any other line is an error."""
    for number, line in read_lines(path):
        if not line.strip():
            yield number, None
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record
