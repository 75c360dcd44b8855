"""DistillCSE (Xu et al., EMNLP 2023 Findings) for sentence-transformers: losses, teachers, evaluation, CLI.

The public names load lazily, so that ``distillcse --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CachedGroupPDistillLoss": "losses",
    "CachedMultiTeacherAvgLoss": "losses",
    "DistillCSELoss": "losses",
    "InputError": "errors",
    "GroupPDistillLoss": "losses",
    "InBatchDistillLoss": "losses",
    "MultiTeacherAvgLoss": "losses",
    "TeacherEnsemble": "teachers",
    "add_teacher_embeddings": "teachers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
