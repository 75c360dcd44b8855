"""Issue 6.1: bad input is refused with an error that names the problem, or gets a documented warning."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from distillcse_st import CachedGroupPDistillLoss, GroupPDistillLoss, MultiTeacherAvgLoss, add_teacher_embeddings
from distillcse_st.similarity import (
    cosine_similarity_matrix,
    duplicate_groups,
    duplicate_mask,
    group_shuffled_pairing,
    in_batch_distillation_loss,
    off_diagonal,
    simcse_contrastive_loss,
    similarity_from_stacked,
    weighted_similarity,
)
from tests.helpers import load

LOGGER = "distillcse_st.losses.base"


def features(model: SentenceTransformer, texts: list[str]) -> list[dict[str, torch.Tensor]]:
    return [model.preprocess(texts)]


def labels_for(texts: list[str], teachers: list[SentenceTransformer], weights=None) -> torch.Tensor:
    dataset = add_teacher_embeddings(Dataset.from_dict({"text": texts}), teachers, weights=weights,
                                     show_progress_bar=False)
    return torch.tensor(dataset["label"])


# --- arguments -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_p": 0.0}, "group_p must lie in \\(0, 1\\]"),
        ({"group_p": -0.1}, "group_p must lie in \\(0, 1\\]"),
        ({"group_p": 1.01}, "group_p must lie in \\(0, 1\\]"),
        ({"teacher_temperature": 0.0}, "teacher_temperature must be a positive number"),
        ({"student_temperature": -0.025}, "student_temperature must be a positive number"),
        ({"contrastive_temperature": 0}, "contrastive_temperature must be a positive number"),
        ({"group_temperature": float("inf")}, "group_temperature must be a positive number"),
        ({"weights": [-0.5, 1.5]}, "non-negative"),
        ({"weights": [1.0]}, "Got 1 weights for 2 teachers"),
        ({"weights": [0.2, 0.3, 0.5]}, "Got 3 weights for 2 teachers"),
    ],
)
def test_bad_hyperparameters_name_the_problem(student, teacher, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiTeacherAvgLoss(student, teachers=[teacher, teacher], **kwargs)


def test_group_p_of_one_is_accepted(student, teacher, corpus):
    loss = GroupPDistillLoss(student, teacher=teacher, group_p=1.0)
    assert torch.isfinite(loss(features(student, corpus[:6]), None))


# --- batch layout ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True])
def test_batch_of_one_gives_a_zero_loss_that_reaches_every_parameter_with_one_warning(
    student, teacher, corpus, caplog, cached
):
    loss_class = CachedGroupPDistillLoss if cached else GroupPDistillLoss
    loss = loss_class(student, teacher=teacher)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            value = loss(features(student, corpus[:1]), None)
            assert value.item() == 0.0
            value.backward()
    assert sum("batch of 1 sentence" in record.getMessage() for record in caplog.records) == 1
    reached = {name for name, parameter in student.named_parameters() if parameter.grad is not None}
    student.zero_grad(set_to_none=True)
    loss(features(student, corpus[:4]), None).backward()
    assert reached == {name for name, parameter in student.named_parameters() if parameter.grad is not None}


@pytest.mark.parametrize("columns", [0, 2, 3])
def test_wrong_number_of_text_columns_is_refused(student, teacher, corpus, columns):
    batch = features(student, corpus[:4]) * columns
    with pytest.raises(ValueError, match=f"exactly one text column.*has {columns} text columns"):
        GroupPDistillLoss(student, teacher=teacher)(batch, None)


def test_trainer_on_a_pair_dataset_fails_at_the_first_step_with_the_reason(tiny_model_dir, teacher, corpus, tmp_path):
    student = load(tiny_model_dir)
    pairs = Dataset.from_dict({"anchor": corpus[:8], "positive": corpus[8:16]})
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1,
                                                report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=pairs,
                                         loss=GroupPDistillLoss(student, teacher=teacher))
    with pytest.raises(ValueError, match="exactly one text column"):
        trainer.train()


# --- precomputed labels ----------------------------------------------------------------------------------


def test_labels_with_nan_or_inf_are_refused(student, corpus):
    loss = GroupPDistillLoss(student, teacher=None)
    good = F.normalize(torch.randn(4, 8), dim=-1)
    for bad_value in (float("nan"), float("inf"), -float("inf")):
        bad = good.clone()
        bad[2, 3] = bad_value
        with pytest.raises(ValueError, match="NaN or inf"):
            loss(features(student, corpus[:4]), bad)


def test_labels_of_the_wrong_shape_are_refused(student, corpus):
    loss = GroupPDistillLoss(student, teacher=None)
    with pytest.raises(ValueError, match="shape \\(batch_size=4, dim\\)"):
        loss(features(student, corpus[:4]), torch.randn(4))
    with pytest.raises(ValueError, match="shape \\(batch_size=4, dim\\)"):
        loss(features(student, corpus[:4]), torch.ones(4, 8, dtype=torch.long))


def test_label_width_must_not_change_between_batches(student, teacher, other_vocab_teacher_dir, corpus):
    other = load(other_vocab_teacher_dir)
    loss = MultiTeacherAvgLoss(student, teachers=None)
    both = labels_for(corpus[:4], [teacher, other])  # 32 + 24 columns
    assert both.shape == (4, 56)
    assert torch.isfinite(loss(features(student, corpus[:4]), both))
    one = labels_for(corpus[4:8], [teacher])  # a teacher block missing
    with pytest.raises(ValueError, match="width 32, but the first batch had width 56"):
        loss(features(student, corpus[4:8]), one)


def test_raw_unnormalised_embeddings_are_refused_as_labels(student, teacher, corpus):
    raw = teacher.encode(corpus[:6], convert_to_tensor=True)  # mean pooling, no Normalize: norms differ
    with pytest.raises(ValueError, match="different norms"):
        GroupPDistillLoss(student, teacher=None)(features(student, corpus[:6]), raw)
    normalised = F.normalize(raw, dim=-1)  # a valid one-teacher layout
    assert torch.isfinite(GroupPDistillLoss(student, teacher=None)(features(student, corpus[:6]), normalised))


def test_teachers_of_different_sizes_stack_into_one_label_row(student, teacher, other_vocab_teacher_dir, corpus):
    """Teachers of 32 and 24 dimensions: blocks are concatenated, and the loss reads the weighted average."""
    other = load(other_vocab_teacher_dir)
    texts = corpus[:10]
    weights = [0.3, 0.7]
    stacked = labels_for(texts, [teacher, other], weights)
    assert stacked.shape == (10, 32 + 24)
    assert torch.allclose(stacked[:, :32].norm(dim=-1) ** 2, torch.full((10,), 0.3), atol=1e-5)
    assert torch.allclose(stacked[:, 32:].norm(dim=-1) ** 2, torch.full((10,), 0.7), atol=1e-5)
    expected = weighted_similarity([teacher.encode(texts, convert_to_tensor=True),
                                    other.encode(texts, convert_to_tensor=True)], weights)
    assert torch.allclose(similarity_from_stacked(stacked), expected, atol=1e-5)
    loss = MultiTeacherAvgLoss(student, teachers=None)
    assert torch.allclose(loss.teacher_similarity(student.preprocess(texts), stacked), expected, atol=1e-5)


def test_labels_next_to_live_teachers_are_ignored_with_a_warning(student, teacher, corpus, caplog):
    loss = GroupPDistillLoss(student, teacher=teacher)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loss(features(student, corpus[:4]), torch.randn(4, 8))
    assert "label' column is ignored" in caplog.text


def test_a_live_teacher_producing_nan_is_refused(student, teacher, corpus, monkeypatch):
    loss = GroupPDistillLoss(student, teacher=teacher)
    monkeypatch.setattr(loss.teachers, "rows", lambda features, *args, **kwargs: torch.full((4, 8), math.nan))
    with pytest.raises(ValueError, match="live teacher produced NaN"):
        loss(features(student, corpus[:4]), None)


# --- dropout ---------------------------------------------------------------------------------------------


def test_student_without_dropout_is_warned_about(no_dropout_student_dir, teacher, corpus, caplog):
    student = load(no_dropout_student_dir)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loss = GroupPDistillLoss(student, teacher=teacher)
    assert "no dropout" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loss(features(student, corpus[:4]), None).backward()
        loss(features(student, corpus[:4]), None).backward()
    assert caplog.text.count("two SimCSE views of the batch are identical") == 1  # warned once
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        GroupPDistillLoss(student, teacher=teacher, contrastive_weight=0)  # no SimCSE term: nothing to warn about
    assert caplog.text == ""


# --- duplicates ------------------------------------------------------------------------------------------


def test_duplicate_mask_marks_copies_but_not_the_anchor_itself():
    ids = torch.tensor([[1, 5, 2, 0], [1, 6, 2, 0], [1, 5, 2, 0], [1, 5, 2, 0], [1, 7, 2, 0]])
    groups = duplicate_groups(ids)
    mask = duplicate_mask(groups)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    for i, j in [(0, 2), (0, 3), (2, 0), (2, 3), (3, 0), (3, 2)]:
        expected[i, j] = True
    assert torch.equal(mask, expected)
    assert torch.equal(duplicate_mask(groups, row_offset=2, rows=2), expected[2:4])
    assert not duplicate_mask(duplicate_groups(torch.arange(12).view(4, 3))).any()


def reference_masked_kd(z: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Vanilla KD with each row's excluded candidates (itself and its copies) removed, one row at a time."""
    student = cosine_similarity_matrix(z, z)
    rows = []
    for i in range(z.size(0)):
        keep = ~mask[i]
        keep[i] = False
        q = torch.softmax(teacher[i, keep] / 0.0125, dim=-1)
        rows.append(-(q * torch.log_softmax(student[i, keep] / 0.025, dim=-1)).sum())
    return torch.stack(rows).mean()


def reference_masked_contrastive(z1: torch.Tensor, z2: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = cosine_similarity_matrix(z1, z2) / 0.05
    rows = []
    for i in range(z1.size(0)):
        keep = ~mask[i]
        rows.append(-torch.log_softmax(logits[i, keep], dim=-1)[keep[: i + 1].sum() - 1])
    return torch.stack(rows).mean()


def test_duplicates_are_masked_out_of_negatives_and_distillation_candidates():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 16), torch.randn(6, 16)
    z1[3], z1[5] = z1[1], z1[1]  # sentences 1, 3, 5 are copies
    teacher = cosine_similarity_matrix(*(2 * [torch.randn(6, 8)]))
    mask = duplicate_mask(torch.tensor([0, 1, 2, 1, 4, 1]))
    for divergence in ("ce", "kl", "js"):
        assert torch.isfinite(in_batch_distillation_loss(z1, teacher, mask=mask, divergence=divergence))
    assert in_batch_distillation_loss(z1, teacher, mask=mask).item() == pytest.approx(
        reference_masked_kd(z1, teacher, mask).item(), rel=1e-5)
    assert simcse_contrastive_loss(z1, z2, mask=mask).item() == pytest.approx(
        reference_masked_contrastive(z1, z2, mask).item(), rel=1e-5)
    # The kl divergence differs from ce by the teacher entropy only, also with masked candidates.
    q = torch.softmax(off_diagonal(teacher).masked_fill(off_diagonal(mask), -1e4) / 0.0125, dim=-1)
    entropy = -(q * q.clamp_min(1e-30).log()).sum(-1).mean()
    assert in_batch_distillation_loss(z1, teacher, mask=mask, divergence="kl").item() == pytest.approx(
        in_batch_distillation_loss(z1, teacher, mask=mask).item() - entropy.item(), abs=1e-4)


def test_group_p_pairs_masked_candidates_only_with_each_other():
    torch.manual_seed(1)
    teacher = off_diagonal(cosine_similarity_matrix(*(2 * [torch.randn(9, 8)])))
    mask = off_diagonal(duplicate_mask(torch.tensor([0, 1, 0, 3, 0, 5, 1, 7, 8])))
    teacher = teacher.masked_fill(mask, -1e4)
    for _ in range(20):
        sorted_teacher, index = group_shuffled_pairing(teacher, group_p=1.0, mask=mask)
        masked_rank = sorted_teacher <= -1e4
        assert torch.equal(mask.gather(-1, index), masked_rank)


def test_loss_with_duplicates_in_the_batch_is_finite_and_masks_them(student, teacher, corpus):
    texts = [corpus[0], corpus[1], corpus[0], corpus[2], corpus[0], corpus[3]]
    loss = GroupPDistillLoss(student, teacher=teacher, group_p=None)
    student.eval()
    value = loss(features(student, texts), None)
    assert torch.isfinite(value)
    with torch.no_grad():
        z = student.encode(texts, convert_to_tensor=True)
        t = teacher.encode(texts, convert_to_tensor=True)
    mask = duplicate_mask(torch.tensor([0, 1, 0, 2, 0, 3]))
    expected = reference_masked_contrastive(z, z, mask) + reference_masked_kd(z, weighted_similarity([t], [1.0]), mask)
    assert value.item() == pytest.approx(expected.item(), rel=1e-4)
    student.train()
    for group_p in (None, 0.5, 1.0):
        value = GroupPDistillLoss(student, teacher=teacher, group_p=group_p)(features(student, texts), None)
        value.backward()
        assert torch.isfinite(value)
        assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
        student.zero_grad()


def test_a_batch_of_copies_of_one_sentence_stays_finite(student, teacher, corpus):
    value = GroupPDistillLoss(student, teacher=teacher)(features(student, [corpus[0]] * 4), None)
    value.backward()
    assert torch.isfinite(value)
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


# --- empty strings ---------------------------------------------------------------------------------------


def test_empty_strings_train_with_a_warning(student, other_vocab_teacher_dir, corpus, caplog):
    other = load(other_vocab_teacher_dir)  # a teacher with its own tokenizer: the texts are decoded and re-encoded
    texts = ["", corpus[0], "   ", corpus[1], corpus[2]]
    loss = GroupPDistillLoss(student, teacher=other)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        value = loss(features(student, texts), None)
        loss(features(student, texts), None)
    value.backward()
    assert torch.isfinite(value)
    assert caplog.text.count("2 text(s) of a batch are empty or blank") == 1
    # "" and "   " tokenize alike ([CLS] [SEP]): they are duplicates of each other and masked as such.
    groups = loss.duplicate_ids(features(student, texts)[0])
    assert groups[0] == groups[2] and len(set(groups.tolist())) == 4
