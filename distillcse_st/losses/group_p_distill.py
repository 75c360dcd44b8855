from __future__ import annotations

from sentence_transformers import SentenceTransformer

from distillcse_st.losses.base import DistillCSELoss
from distillcse_st.similarity import Divergence


class GroupPDistillLoss(DistillCSELoss):
    def __init__(
        self,
        model: SentenceTransformer,
        teacher: SentenceTransformer | None = None,
        group_p: float | None = 0.1,
        group_size: int | None = None,
        group_temperature: float = 1.0,
        contrastive_temperature: float = 0.05,
        student_temperature: float = 0.025,
        teacher_temperature: float = 0.0125,
        contrastive_weight: float = 1.0,
        distillation_weight: float = 1.0,
        divergence: Divergence = "ce",
        gather_across_devices: bool = False,
    ) -> None:
        """
        DistillCSE with Group-P shuffling: unsupervised SimCSE plus distillation of a teacher's in-batch
        similarity distribution, of which only the coarse ranking is transferred.

        For a batch of sentences, the student embeds every sentence twice (two dropout views ``z``,
        ``z'``). The loss is ``contrastive_weight * L_cl + distillation_weight * L_kd``, where ``L_cl`` is
        SimCSE's cross-entropy over ``cos(z_i, z'_j) / contrastive_temperature`` and ``L_kd`` the
        cross-entropy between ``softmax(T_i / teacher_temperature)`` and ``softmax(S_i / student_temperature)``
        for the teacher's similarities ``T`` and the student's ``S = cos(z_i, z_j)``, diagonal excluded.
        With Group-P, each teacher row is sorted, cut into groups of cumulative probability mass
        ``group_p``, and the order inside each group is drawn at random every step before the pairing.
        The teacher is frozen (eval mode, no gradients) and is not saved with the student.

        Args:
            model: The student SentenceTransformer (with dropout, for the two SimCSE views).
            teacher: A SentenceTransformer teacher run on every batch. ``None``: the dataset carries the
                teacher in a ``label`` column made by :func:`~distillcse_st.add_teacher_embeddings`. The
                teacher may have its own tokenizer, maximum length and embedding size.
            group_p: Probability mass of a Group-P group (0.1 in the paper), in (0, 1]. ``None``: no
                shuffling, i.e. vanilla distillation. 1.0 shuffles the whole row; a tiny value changes nothing.
            group_size: Instead of ``group_p``: groups of this many consecutive teacher ranks (the authors'
                fixed-size variant). Set ``group_p=None`` with it.
            group_temperature: Temperature of the softmax that sizes the Group-P groups. 1.0, the authors'
                choice, applies it to the raw cosines, so with ``group_p=0.1`` each group holds about a tenth
                of the batch.
            contrastive_temperature: SimCSE temperature (0.05).
            student_temperature: Temperature of the student's distribution (0.025).
            teacher_temperature: Temperature of the teacher's distribution (0.0125).
            contrastive_weight: Weight of the SimCSE term; 0 trains by distillation alone (one student
                forward pass per batch instead of two).
            distillation_weight: Weight ``lambda`` of the distillation term (1.0).
            divergence: ``"ce"`` (the paper's), ``"kl"`` (the same gradients) or ``"js"`` (Jensen-Shannon).
            gather_across_devices: In a multi-process run (DDP via ``torchrun`` or ``accelerate launch``), gather
                the student embeddings (with gradients) and the teacher rows of all processes, so that every
                anchor has the whole global batch as negatives and distillation candidates, exactly as one
                process with the global batch would (see ``docs/reliability.md``). Needs equal batch sizes on
                all processes (``dataloader_drop_last=True``). Does nothing in a single process.

        References:
            - DistillCSE: Distilled Contrastive Learning for Sentence Embeddings, Findings of EMNLP 2023:
              https://arxiv.org/abs/2310.13499
            - SimCSE: Simple Contrastive Learning of Sentence Embeddings: https://arxiv.org/abs/2104.08821

        Requirements:
            1. Single sentences (unlabeled text), at least 2 per batch and ideally 64 or more.
            2. A teacher: live, or precomputed into a ``label`` column.
            3. A student with dropout, unless ``contrastive_weight=0``.

        Inputs:
            +---------------------------------------------+--------------------------------------------+
            | Texts                                       | Labels                                     |
            +=============================================+============================================+
            | single sentences, with a live ``teacher``   | none                                       |
            +---------------------------------------------+--------------------------------------------+
            | single sentences, ``teacher=None``          | stacked teacher embeddings (``label``)     |
            +---------------------------------------------+--------------------------------------------+

        Recommendations:
            - Precompute the teacher with :func:`~distillcse_st.add_teacher_embeddings` when you train for
              more than one epoch or with several teachers: a teacher then costs nothing per step.
            - Use ``BatchSamplers.NO_DUPLICATES`` so that no sentence meets a copy of itself in its batch.

        Relations:
            - :class:`MultiTeacherAvgLoss` is this loss with K teachers whose similarities are averaged.
            - With ``distillation_weight=0`` it is unsupervised SimCSE (ST's
              :class:`~sentence_transformers.sentence_transformer.losses.MultipleNegativesRankingLoss` on
              (text, text) pairs); with ``group_p=None`` it is vanilla in-batch distillation.
            - :class:`~sentence_transformers.sentence_transformer.losses.DistillKLDivLoss` distils scores of
              given (query, passage) pairs; this loss distils the whole in-batch similarity distribution.
            - :class:`~distillcse_st.losses.CachedGroupPDistillLoss` gives the same loss with GradCache, for
              batches larger than memory allows.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from distillcse_st.losses import GroupPDistillLoss

                student = SentenceTransformer("path/to/student")
                teacher = SentenceTransformer("path/to/teacher")
                train_dataset = Dataset.from_dict({"text": ["It's nice weather outside today.", "He drove to work."]})
                loss = GroupPDistillLoss(student, teacher=teacher, group_p=0.1)

                trainer = SentenceTransformerTrainer(model=student, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__(
            model,
            teachers=None if teacher is None else [teacher],
            group_p=group_p,
            group_size=group_size,
            group_temperature=group_temperature,
            contrastive_temperature=contrastive_temperature,
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
            contrastive_weight=contrastive_weight,
            distillation_weight=distillation_weight,
            divergence=divergence,
            gather_across_devices=gather_across_devices,
        )
