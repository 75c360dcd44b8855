from __future__ import annotations

from collections.abc import Sequence

from sentence_transformers import SentenceTransformer

from distillcse_st.losses.base import DistillCSELoss
from distillcse_st.similarity import Divergence


class MultiTeacherAvgLoss(DistillCSELoss):
    def __init__(
        self,
        model: SentenceTransformer,
        teachers: Sequence[SentenceTransformer] | None = None,
        weights: Sequence[float] | None = None,
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
        DistillCSE with teacher components: the student distils the weighted average of K teachers'
        in-batch cosine-similarity matrices, ``T_ij = sum_k w_k cos(g_k(x_i), g_k(x_j))``, on top of the
        SimCSE contrastive loss, optionally with Group-P shuffling of that average.

        Averaging K teachers (e.g. the same SimCSE recipe trained with K seeds) lowers the variance of
        the teacher's logits, the second remedy of the paper; with ``group_p`` set both remedies are
        combined (the full DistillCSE). Everything else is as in :class:`GroupPDistillLoss`.

        Args:
            model: The student SentenceTransformer (with dropout, for the two SimCSE views).
            teachers: The teacher components, run on every batch. ``None``: the dataset carries them
                precomputed in a ``label`` column made by :func:`~distillcse_st.add_teacher_embeddings`
                (the averaged similarity of a batch is then one matmul, whatever K). Teachers may differ
                from the student and from each other in tokenizer, maximum length and embedding size.
            weights: One non-negative weight per teacher; ``None`` gives ``1 / K``. The paper's two-family
                weighting (alpha for one family of K1 components, 1 - alpha for K2 others) is
                ``[alpha / K1] * K1 + [(1 - alpha) / K2] * K2``. With precomputed teachers, give the weights
                to :func:`~distillcse_st.add_teacher_embeddings` instead.
            group_p: Group-P probability mass, in (0, 1]; ``None`` (the components-only variant) disables
                the shuffling. The full DistillCSE uses 0.1.
            group_size: Instead of ``group_p``: groups of this many consecutive teacher ranks.
            group_temperature: Temperature of the softmax that sizes the Group-P groups (1.0).
            contrastive_temperature: SimCSE temperature (0.05).
            student_temperature: Temperature of the student's distribution (0.025).
            teacher_temperature: Temperature of the averaged teacher's distribution (0.0125).
            contrastive_weight: Weight of the SimCSE term; 0 trains by distillation alone.
            distillation_weight: Weight ``lambda`` of the distillation term (1.0).
            divergence: ``"ce"`` (the paper's), ``"kl"`` or ``"js"``.
            gather_across_devices: In a multi-process run (DDP via ``torchrun`` or ``accelerate launch``), gather
                the student embeddings (with gradients) and the teacher rows of all processes, so that every
                anchor has the whole global batch as negatives and distillation candidates, exactly as one
                process with the global batch would (see ``docs/reliability.md``). Needs equal batch sizes on
                all processes (``dataloader_drop_last=True``). Does nothing in a single process.

        References:
            - DistillCSE: Distilled Contrastive Learning for Sentence Embeddings, Findings of EMNLP 2023:
              https://arxiv.org/abs/2310.13499

        Requirements:
            1. Single sentences (unlabeled text), at least 2 per batch and ideally 64 or more.
            2. K >= 1 teachers: live, or precomputed into a ``label`` column.

        Inputs:
            +---------------------------------------------+--------------------------------------------+
            | Texts                                       | Labels                                     |
            +=============================================+============================================+
            | single sentences, with live ``teachers``    | none                                       |
            +---------------------------------------------+--------------------------------------------+
            | single sentences, ``teachers=None``         | stacked teacher embeddings (``label``)     |
            +---------------------------------------------+--------------------------------------------+

        Recommendations:
            - With several teachers, precompute them: K live teachers cost K extra forward passes a step.

        Relations:
            - With a single teacher it is :class:`GroupPDistillLoss`.
            - :class:`~distillcse_st.losses.CachedMultiTeacherAvgLoss` gives the same loss with GradCache.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from distillcse_st import add_teacher_embeddings
                from distillcse_st.losses import MultiTeacherAvgLoss

                student = SentenceTransformer("path/to/student")
                teachers = [SentenceTransformer(f"path/to/simcse-seed{seed}") for seed in range(4)]
                train_dataset = Dataset.from_dict({"text": ["It's nice weather outside today.", "He drove to work."]})
                train_dataset = add_teacher_embeddings(train_dataset, teachers)  # adds a "label" column
                loss = MultiTeacherAvgLoss(student, teachers=None, group_p=0.1)

                trainer = SentenceTransformerTrainer(model=student, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__(
            model,
            teachers=teachers,
            weights=weights,
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
