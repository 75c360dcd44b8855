"""Training on ``SentenceTransformerTrainer``: corpora, layer pruning, SimCSE and DistillCSE stages, self-training.

The ``distillcse`` sub-commands are thin layers over these functions. Importing this package is cheap: torch and
sentence-transformers load with the first function used.
"""

from __future__ import annotations

from distillcse_st.lazy import lazy_getattr

_EXPORTS = {
    "load_corpus": "corpus",
    "prune_layers": "pruning",
    "prune_model_dir": "pruning",
    "self_train": "self_train",
    "train_distill": "stages",
    "train_simcse": "stages",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
