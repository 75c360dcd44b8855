"""DistillCSE (Xu et al., EMNLP 2023 Findings) for sentence-transformers: losses, teachers, evaluation, CLI.

The public names load lazily, so that ``distillcse --help`` does not pay for importing torch.
"""

from __future__ import annotations

from distillcse_st.lazy import lazy_getattr

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
__getattr__ = lazy_getattr(__name__, _EXPORTS)
