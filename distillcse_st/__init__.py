"""DistillCSE (Xu et al., EMNLP 2023 Findings) for sentence-transformers: losses, teachers, evaluation, CLI."""

from distillcse_st.losses import (
    CachedGroupPDistillLoss,
    CachedMultiTeacherAvgLoss,
    DistillCSELoss,
    GroupPDistillLoss,
    MultiTeacherAvgLoss,
)
from distillcse_st.teachers import TeacherEnsemble, add_teacher_embeddings

__version__ = "0.1.0"

__all__ = [
    "CachedGroupPDistillLoss",
    "CachedMultiTeacherAvgLoss",
    "DistillCSELoss",
    "GroupPDistillLoss",
    "MultiTeacherAvgLoss",
    "TeacherEnsemble",
    "add_teacher_embeddings",
]
