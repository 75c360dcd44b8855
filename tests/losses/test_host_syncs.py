"""The loss path makes no host-device synchronisation after the first batch (issue 13).

On CUDA, reading a tensor's value on the host (``bool(t)``, ``t.item()``, ``t.tolist()``, ``torch.equal``,
``torch.unique``, ``nonzero``) waits for the GPU and stops the CPU from queueing the next step. The tests
count such reads while the losses score a batch: the value checks (NaN labels, label norms, empty texts,
identical views) run on the first batch only, and duplicate masking and Group-P need none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses

from distillcse_st import GroupPDistillLoss, InBatchDistillLoss, add_teacher_embeddings
from distillcse_st.losses.base import BatchTargets

HOST_READS = {
    (torch.Tensor, "__bool__"),
    (torch.Tensor, "item"),
    (torch.Tensor, "tolist"),
    (torch.Tensor, "nonzero"),
    (torch.Tensor, "__int__"),
    (torch, "equal"),
    (torch, "unique"),
}


@contextmanager
def counted_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    counts: Counter = Counter()
    with monkeypatch.context() as patch:
        for owner, name in HOST_READS:
            original = getattr(owner, name)

            def counting(*args, _original=original, _name=name, **kwargs):
                counts[_name] += 1
                return _original(*args, **kwargs)

            patch.setattr(owner, name, counting)
        yield counts


def labels_for(teacher, texts: list[str]) -> torch.Tensor:
    from datasets import Dataset

    dataset = add_teacher_embeddings(Dataset.from_dict({"text": texts}), [teacher], show_progress_bar=False)
    return torch.tensor(dataset["label"])


@pytest.mark.parametrize("group_p", [None, 0.1])
def test_distillcse_loss_reads_no_value_after_the_first_batch(student, teacher, corpus, group_p, monkeypatch):
    loss = GroupPDistillLoss(student, teacher=None, group_p=group_p)
    texts = corpus[:8] + corpus[:2]  # duplicates: the mask is built without asking whether there are any
    labels = labels_for(teacher, texts)
    views = [torch.randn(len(texts), 16, requires_grad=True) for _ in range(2)]
    loss.loss_from_embeddings(views, loss.batch_targets(student.preprocess(texts), labels))  # first batch: checks
    features = student.preprocess(texts)
    with counted_host_reads(monkeypatch) as counts:
        targets = loss.batch_targets(features, labels)
        value = loss.loss_from_embeddings(views, targets)
    assert counts == Counter()
    assert isinstance(targets, BatchTargets) and torch.isfinite(value)


def test_first_batch_checks_run_once_and_still_refuse_bad_first_batches(student, teacher, corpus):
    loss = GroupPDistillLoss(student, teacher=None)
    with pytest.raises(ValueError, match="NaN"):
        loss([student.preprocess(corpus[:4])], torch.full((4, 32), float("nan")))
    with pytest.raises(ValueError, match="different norms"):  # not passed yet: still checked
        loss([student.preprocess(corpus[:4])], torch.randn(4, 32))
    loss([student.preprocess(corpus[:4])], labels_for(teacher, corpus[:4]))
    # Passed once: later batches are not read on the host (a shape error is still caught, it reads no value).
    loss([student.preprocess(corpus[4:8])], torch.randn(4, 32))
    with pytest.raises(ValueError, match="shape"):
        loss([student.preprocess(corpus[4:8])], torch.randn(3, 32))


def test_stacked_term_reads_no_value_after_the_first_batch(student, teacher, corpus, monkeypatch):
    loss = InBatchDistillLoss(student, st_losses.EmbedDistillLoss(student), group_p=0.1)
    student.eval()
    texts = corpus[:8]
    labels = teacher.encode(texts, convert_to_tensor=True)
    loss([student.preprocess(texts)], labels)
    columns = [torch.randn(len(texts), 32, requires_grad=True)]
    features = student.preprocess(texts)
    with counted_host_reads(monkeypatch) as counts:
        similarity = loss.batch_teacher_similarity([features], labels)
        value = loss.term(columns, similarity, features)
    assert counts == Counter()
    assert torch.isfinite(value)
