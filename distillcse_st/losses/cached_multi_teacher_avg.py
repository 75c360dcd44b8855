from __future__ import annotations

from collections.abc import Sequence

from sentence_transformers import SentenceTransformer

from distillcse_st.losses.cached_base import CachedDistillCSEMixin
from distillcse_st.losses.multi_teacher_avg import MultiTeacherAvgLoss
from distillcse_st.similarity import Divergence


class CachedMultiTeacherAvgLoss(CachedDistillCSEMixin, MultiTeacherAvgLoss):
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
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        """
        :class:`~distillcse_st.losses.MultiTeacherAvgLoss` with GradCache (https://huggingface.co/papers/2101.06983):
        distillation of K averaged teachers plus SimCSE, for batches far larger than memory would allow.

        The student embeds the batch in mini-batches of ``mini_batch_size`` without gradients (once per
        dropout view, saving each mini-batch's RNG state), the full-batch loss is computed and
        back-propagated to the embeddings only, and during the outer backward pass every mini-batch is
        re-embedded with gradients under its saved RNG state (so both dropout views get the same masks as
        in the first pass) and receives its cached gradient. See
        :class:`~distillcse_st.losses.CachedGroupPDistillLoss` for the details; the machinery is ST's
        :class:`~sentence_transformers.base.losses.CachedLossMixin`. Live teachers run ``mini_batch_size``
        sentences at a time, without gradients.

        Args:
            model: The student SentenceTransformer (with dropout, for the two SimCSE views).
            teachers: The teacher components, run on every batch. ``None``: the dataset carries them
                precomputed in a ``label`` column made by :func:`~distillcse_st.add_teacher_embeddings`.
            weights: One non-negative weight per teacher; ``None`` gives ``1 / K``. With precomputed
                teachers, give the weights to :func:`~distillcse_st.add_teacher_embeddings` instead.
            group_p: Group-P probability mass, in (0, 1]; ``None`` disables the shuffling. The full
                DistillCSE uses 0.1.
            group_size: Instead of ``group_p``: groups of this many consecutive teacher ranks.
            group_temperature: Temperature of the softmax that sizes the Group-P groups (1.0).
            contrastive_temperature: SimCSE temperature (0.05).
            student_temperature: Temperature of the student's distribution (0.025).
            teacher_temperature: Temperature of the averaged teacher's distribution (0.0125).
            contrastive_weight: Weight of the SimCSE term; 0 trains by distillation alone.
            distillation_weight: Weight ``lambda`` of the distillation term (1.0).
            divergence: ``"ce"`` (the paper's), ``"kl"`` or ``"js"``.
            gather_across_devices: In a multi-process run, gather the embeddings (with gradients) and teacher
                rows of all processes, as in the plain loss; the mini-batching stays per process.
            mini_batch_size: Sentences per forward pass of the student (and of live teachers). It bounds the
                memory, not the result. 32 by default.
            mini_batch_num_tokens: If set, the student's mini-batches are packed by number of non-padding
                tokens instead of by ``mini_batch_size`` sentences.
            show_progress_bar: Show a progress bar over the mini-batches.

        References:
            - DistillCSE: Distilled Contrastive Learning for Sentence Embeddings, Findings of EMNLP 2023:
              https://arxiv.org/abs/2310.13499
            - Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup (GradCache):
              https://huggingface.co/papers/2101.06983

        Requirements:
            1. Single sentences (unlabeled text), at least 2 per batch; a large ``per_device_train_batch_size``
               with a small ``mini_batch_size``.
            2. K >= 1 teachers: live, or precomputed into a ``label`` column.
            3. A student with dropout, unless ``contrastive_weight=0``; not a StaticEmbedding model.

        Inputs:
            +---------------------------------------------+--------------------------------------------+
            | Texts                                       | Labels                                     |
            +=============================================+============================================+
            | single sentences, with live ``teachers``    | none                                       |
            +---------------------------------------------+--------------------------------------------+
            | single sentences, ``teachers=None``         | stacked teacher embeddings (``label``)     |
            +---------------------------------------------+--------------------------------------------+

        Recommendations:
            - Precompute the teachers with :func:`~distillcse_st.add_teacher_embeddings`: K live teachers
              cost K extra forward passes a step, whatever the mini-batch size.

        Relations:
            - Equivalent to :class:`~distillcse_st.losses.MultiTeacherAvgLoss`, with memory that does not grow
              with the batch, at the cost of one extra forward pass per view.
            - With a single teacher it is :class:`~distillcse_st.losses.CachedGroupPDistillLoss`.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import (
                    SentenceTransformer,
                    SentenceTransformerTrainer,
                    SentenceTransformerTrainingArguments,
                )
                from distillcse_st import add_teacher_embeddings
                from distillcse_st.losses import CachedMultiTeacherAvgLoss

                student = SentenceTransformer("path/to/student")
                teachers = [SentenceTransformer(f"path/to/simcse-seed{seed}") for seed in range(4)]
                train_dataset = Dataset.from_dict({"text": ["It's nice weather outside today.", "He drove to work."]})
                train_dataset = add_teacher_embeddings(train_dataset, teachers)  # adds a "label" column
                loss = CachedMultiTeacherAvgLoss(student, teachers=None, group_p=0.1, mini_batch_size=32)

                args = SentenceTransformerTrainingArguments(output_dir="out", per_device_train_batch_size=1024)
                trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=train_dataset, loss=loss)
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
        self._setup_cache(model, mini_batch_size, mini_batch_num_tokens, show_progress_bar)
