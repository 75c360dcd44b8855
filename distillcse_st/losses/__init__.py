"""DistillCSE losses for sentence-transformers."""

from distillcse_st.losses.base import DistillCSELoss
from distillcse_st.losses.cached_group_p_distill import CachedGroupPDistillLoss
from distillcse_st.losses.cached_multi_teacher_avg import CachedMultiTeacherAvgLoss
from distillcse_st.losses.group_p_distill import GroupPDistillLoss
from distillcse_st.losses.in_batch_distill import InBatchDistillLoss
from distillcse_st.losses.multi_teacher_avg import MultiTeacherAvgLoss

__all__ = [
    "CachedGroupPDistillLoss",
    "CachedMultiTeacherAvgLoss",
    "DistillCSELoss",
    "GroupPDistillLoss",
    "InBatchDistillLoss",
    "MultiTeacherAvgLoss",
]
