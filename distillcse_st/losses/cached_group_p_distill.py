from __future__ import annotations

from sentence_transformers import SentenceTransformer

from distillcse_st.losses.cached_base import CachedDistillCSEMixin
from distillcse_st.losses.group_p_distill import GroupPDistillLoss
from distillcse_st.similarity import Divergence


class CachedGroupPDistillLoss(CachedDistillCSEMixin, GroupPDistillLoss):
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
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        """
        :class:`~distillcse_st.losses.GroupPDistillLoss` with GradCache (https://huggingface.co/papers/2101.06983):
        the same loss and gradients, for batches far larger than memory would allow.

        The SimCSE contrastive term and the in-batch distillation term both improve with more in-batch
        candidates, but a plain loss keeps the activations of ``2 x batch_size`` student forward passes
        alive until the backward pass. This loss, like ST's
        :class:`~sentence_transformers.sentence_transformer.losses.CachedMultipleNegativesRankingLoss`:

            (1) embeds the batch in mini-batches of ``mini_batch_size`` without gradients, once per dropout
                view, saving the RNG state of every mini-batch;
            (2) computes the full-batch DistillCSE loss from those embeddings and back-propagates it to the
                embeddings only, caching their gradients (a Group-P permutation is drawn once, here);
            (3) during the outer backward pass, re-embeds every mini-batch with gradients under its saved
                RNG state, so both dropout views get exactly the masks of step (1), and feeds the cached
                gradients into the model.

        Only one mini-batch of activations is alive at a time, so memory is that of a batch of
        ``mini_batch_size`` plus the ``(B, B)`` similarity matrices of the loss. The price is a third
        student forward pass per view (steps 1 and 3). Live teachers also run ``mini_batch_size``
        sentences at a time (without gradients). The machinery is ST's
        :class:`~sentence_transformers.base.losses.CachedLossMixin`.

        Args:
            model: The student SentenceTransformer (with dropout, for the two SimCSE views).
            teacher: A SentenceTransformer teacher run on every batch. ``None``: the dataset carries the
                teacher in a ``label`` column made by :func:`~distillcse_st.add_teacher_embeddings`.
            group_p: Probability mass of a Group-P group (0.1 in the paper), in (0, 1]; ``None``: vanilla
                distillation.
            group_size: Instead of ``group_p``: groups of this many consecutive teacher ranks.
            group_temperature: Temperature of the softmax that sizes the Group-P groups (1.0).
            contrastive_temperature: SimCSE temperature (0.05).
            student_temperature: Temperature of the student's distribution (0.025).
            teacher_temperature: Temperature of the teacher's distribution (0.0125).
            contrastive_weight: Weight of the SimCSE term; 0 trains by distillation alone (one student view).
            distillation_weight: Weight ``lambda`` of the distillation term (1.0).
            divergence: ``"ce"`` (the paper's), ``"kl"`` or ``"js"``.
            gather_across_devices: In a multi-process run, gather the embeddings (with gradients) and teacher
                rows of all processes, as in the plain loss; the mini-batching stays per process.
            mini_batch_size: Sentences per forward pass of the student (and of live teachers). It bounds the
                memory, not the result: larger is faster, smaller uses less memory. 32 by default.
            mini_batch_num_tokens: If set, the student's mini-batches are packed by number of non-padding
                tokens instead of by ``mini_batch_size`` sentences (as in ST's cached losses).
            show_progress_bar: Show a progress bar over the mini-batches.

        References:
            - DistillCSE: Distilled Contrastive Learning for Sentence Embeddings, Findings of EMNLP 2023:
              https://arxiv.org/abs/2310.13499
            - Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup (GradCache):
              https://huggingface.co/papers/2101.06983

        Requirements:
            1. Single sentences (unlabeled text), at least 2 per batch; a large ``per_device_train_batch_size``
               with a small ``mini_batch_size`` is what this loss is for.
            2. A teacher: live, or precomputed into a ``label`` column.
            3. A student with dropout, unless ``contrastive_weight=0``; not a StaticEmbedding model.

        Inputs:
            +---------------------------------------------+--------------------------------------------+
            | Texts                                       | Labels                                     |
            +=============================================+============================================+
            | single sentences, with a live ``teacher``   | none                                       |
            +---------------------------------------------+--------------------------------------------+
            | single sentences, ``teacher=None``          | stacked teacher embeddings (``label``)     |
            +---------------------------------------------+--------------------------------------------+

        Recommendations:
            - Precompute the teacher with :func:`~distillcse_st.add_teacher_embeddings`: at large batches a
              live teacher is a large share of the step time.
            - Use ``BatchSamplers.NO_DUPLICATES`` so that no sentence meets a copy of itself in its batch.

        Relations:
            - Equivalent to :class:`~distillcse_st.losses.GroupPDistillLoss` (same loss and parameter
              gradients for the same dropout masks and Group-P draw), with memory that does not grow with
              the batch, at the cost of one extra forward pass per view.
            - :class:`~distillcse_st.losses.CachedMultiTeacherAvgLoss` is the same with K averaged teachers.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import (
                    SentenceTransformer,
                    SentenceTransformerTrainer,
                    SentenceTransformerTrainingArguments,
                )
                from distillcse_st import add_teacher_embeddings
                from distillcse_st.losses import CachedGroupPDistillLoss

                student = SentenceTransformer("path/to/student")
                teacher = SentenceTransformer("path/to/teacher")
                train_dataset = Dataset.from_dict({"text": ["It's nice weather outside today.", "He drove to work."]})
                train_dataset = add_teacher_embeddings(train_dataset, [teacher])  # adds a "label" column
                loss = CachedGroupPDistillLoss(student, teacher=None, group_p=0.1, mini_batch_size=32)

                args = SentenceTransformerTrainingArguments(output_dir="out", per_device_train_batch_size=1024)
                trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__(
            model,
            teacher=teacher,
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
