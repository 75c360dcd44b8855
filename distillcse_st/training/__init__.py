"""Training on ``SentenceTransformerTrainer``: corpora, layer pruning, SimCSE and DistillCSE stages, self-training.

The ``distillcse`` sub-commands are thin layers over these functions. Importing this package is cheap: torch and
sentence-transformers load with the first function used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_corpus": "corpus",
    "prune_layers": "pruning",
    "prune_model_dir": "pruning",
    "self_train": "self_train",
    "train_distill": "stages",
    "train_simcse": "stages",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
