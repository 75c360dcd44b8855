"""DistillCSE losses for sentence-transformers."""

from distillcse_st.losses.base import DistillCSELoss
from distillcse_st.losses.group_p_distill import GroupPDistillLoss
from distillcse_st.losses.multi_teacher_avg import MultiTeacherAvgLoss

__all__ = ["DistillCSELoss", "GroupPDistillLoss", "MultiTeacherAvgLoss"]
