"""The training layer stands on its own: it never imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import distillcse_st.training

COMMAND_LINE = ("distillcse_st.cli", "distillcse_st.commands")


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_training_does_not_import_the_command_line() -> None:
    for path in Path(distillcse_st.training.__file__).parent.glob("*.py"):
        imported = _imported_modules(path)
        assert not [name for name in imported if name.startswith(COMMAND_LINE)], path.name
