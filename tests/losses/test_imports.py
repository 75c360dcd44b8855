"""The losses and teachers import where `datasets` is not installed, as ST's core does (issue 13).

Only :func:`~distillcse_st.add_teacher_embeddings` needs `datasets`, and imports it where it is used.
No module of the package imports a private (underscore) name of sentence-transformers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import distillcse_st

WITHOUT_DATASETS = """
import importlib.metadata as metadata, sys
real = metadata.metadata
def without_datasets(name):
    if name == "datasets":
        raise metadata.PackageNotFoundError(name)
    return real(name)
metadata.metadata = without_datasets  # what sentence-transformers checks
sys.modules["datasets"] = None  # and any import of it fails
from distillcse_st.losses import GroupPDistillLoss, InBatchDistillLoss, MultiTeacherAvgLoss
from distillcse_st.teachers import TeacherEnsemble, add_teacher_embeddings
print("imported")
"""


def test_losses_and_teachers_import_without_datasets():
    result = subprocess.run([sys.executable, "-c", WITHOUT_DATASETS], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("imported")


def test_no_private_sentence_transformers_import():
    private = []
    for path in Path(distillcse_st.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sentence_transformers"):
                private += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert private == []
