"""GradCache for the DistillCSE losses, on top of sentence-transformers' :class:`CachedLossMixin`.

The mixin supplies the three GradCache steps (embed without gradients, loss and its gradient with respect
to the embeddings, replay with gradients under the first pass's RNG state); this module only says how a
DistillCSE batch maps onto them:

- every dropout view of the one text column is its own "column" of ``forward_cached``, so each view's
  mini-batches get their own :class:`~sentence_transformers.base.losses.gradcache.RandContext` and the
  replay reproduces each view's dropout masks;
- the batch's :class:`~distillcse_st.losses.base.BatchTargets` (teacher similarity, computed once per batch
  without gradients, live teachers in mini-batches too; duplicate ids) travel as the ``labels`` of
  ``calculate_loss``;
- ``calculate_loss`` concatenates each view's mini-batch embeddings and calls the plain loss's
  :meth:`~distillcse_st.losses.DistillCSELoss.loss_from_embeddings`, so the loss is the same code, and
  Group-P draws its permutation once, inside the step whose gradient is cached.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.gradcache import CachedLossMixin, has_static_embedding_input
from torch import Tensor

from distillcse_st.losses.base import BatchTargets
from distillcse_st.losses.distillation import model_inputs, refuse_adaptive_layer_around_cache


class CachedDistillCSEMixin(CachedLossMixin):
    """GradCache for a :class:`~distillcse_st.losses.DistillCSELoss` subclass. Put it first in the bases."""

    def _setup_cache(
        self,
        model: SentenceTransformer,
        mini_batch_size: int,
        mini_batch_num_tokens: int | None,
        show_progress_bar: bool,
    ) -> None:
        if has_static_embedding_input(model):
            raise ValueError(
                f"{type(self).__name__} is not compatible with a StaticEmbedding model, whose inputs cannot be "
                "split into mini-batches along a batch dimension. Use the loss without 'Cached' instead."
            )
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be a positive integer, got {mini_batch_size!r}.")
        if mini_batch_num_tokens is not None and not (
            isinstance(mini_batch_num_tokens, int) and not isinstance(mini_batch_num_tokens, bool)
            and mini_batch_num_tokens >= 1
        ):
            raise ValueError(
                f"mini_batch_num_tokens must be a positive integer or None, got {mini_batch_num_tokens!r}."
            )
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        if self.teachers is not None:
            self.teachers.mini_batch_size = mini_batch_size  # live teachers run in mini-batches too

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: BatchTargets | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The full-batch DistillCSE loss from the per-view, per-mini-batch embeddings.

        ``labels`` are the batch's :class:`~distillcse_st.losses.base.BatchTargets`. The loss is computed
        once over the whole batch, so a Group-P permutation is drawn once and the loss and the cached
        gradient belong to the same permutation.
        """
        views = [torch.cat(rep_mbs) for rep_mbs in reps]
        loss = self.loss_from_embeddings(views, labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        refuse_adaptive_layer_around_cache(self._student, type(self).__name__)
        features = self.text_features(sentence_features)
        targets = self.batch_targets(features, labels)
        # One column per dropout view. Shallow copies: mini-batches are sliced from them, never written to.
        return self.forward_cached([model_inputs(features) for _ in range(self.num_views)], targets)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
        }
