"""CachedGroupPDistillLoss and CachedMultiTeacherAvgLoss: GradCache gives the plain loss and gradients.

The plain losses embed both dropout views in one merged forward pass and the cached ones in
mini-batches, so their dropout masks differ by construction. Equivalence with the plain loss is
therefore checked on a student without dropout (p = 0 draws no random numbers, so a Group-P
permutation drawn after the same seed is the same in both paths), and the dropout replay is checked
separately against a reference that embeds the same mini-batches with gradients in the same order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from sentence_transformers import (
    InputExample,
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.losses.gradcache import (
    _create_minibatch,
    _minibatch_ranges,
)
from torch.utils.data import DataLoader

from distillcse_st import (
    CachedGroupPDistillLoss,
    CachedMultiTeacherAvgLoss,
    GroupPDistillLoss,
    MultiTeacherAvgLoss,
    TeacherEnsemble,
    add_teacher_embeddings,
)
from distillcse_st.losses.distillation import model_inputs
from tests.helpers import build_tiny_model, load

TOL = {"rtol": 1e-5, "atol": 1e-5}
BATCH = 10  # 3 and 4 do not divide it, 16 exceeds it


@pytest.fixture(scope="session")
def no_dropout_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_no_dropout"), seed=0, dropout=0.0)


@pytest.fixture
def plain_student(no_dropout_dir: Path) -> SentenceTransformer:
    model = load(no_dropout_dir)
    model.train()
    return model


def loss_and_grads(loss, features, labels, seed: int = 0) -> tuple[float, list[torch.Tensor]]:
    """One loss + backward under a seed; the value and every student parameter's gradient (0 if unused)."""
    model = loss.model
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    value = loss([dict(features)], labels)
    value.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return value.item(), grads


def assert_same(result, expected) -> None:
    (value, grads), (expected_value, expected_grads) = result, expected
    assert value == pytest.approx(expected_value, rel=1e-5, abs=1e-5)
    assert any(g.abs().sum() > 0 for g in expected_grads)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, **TOL)


@pytest.mark.parametrize("mini_batch_size", [1, 3, 4, 16])
@pytest.mark.parametrize("group_p", [0.1, None])
@pytest.mark.parametrize("live", [True, False], ids=["live", "precomputed"])
def test_cached_group_p_equals_plain(plain_student, teacher, corpus, mini_batch_size, group_p, live):
    texts = corpus[:BATCH]
    features = plain_student.preprocess(texts)
    labels = None if live else torch.tensor(
        add_teacher_embeddings(Dataset.from_dict({"text": texts}), [teacher], show_progress_bar=False)["label"]
    )
    kwargs = {"teacher": teacher if live else None, "group_p": group_p}
    plain = GroupPDistillLoss(plain_student, **kwargs)
    cached = CachedGroupPDistillLoss(plain_student, mini_batch_size=mini_batch_size, **kwargs)
    assert_same(loss_and_grads(cached, features, labels), loss_and_grads(plain, features, labels))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"contrastive_weight": 0.0},
        {"distillation_weight": 0.0},
        {"group_p": None, "group_size": 3, "divergence": "js"},
        {"weights": [0.3, 0.7], "divergence": "kl"},
    ],
    ids=["distill-only", "simcse-only", "group-size-js", "weighted-kl"],
)
def test_cached_multi_teacher_equals_plain(plain_student, teacher, other_vocab_teacher_dir, corpus, kwargs):
    features = plain_student.preprocess(corpus[:13])
    teachers = [teacher, load(other_vocab_teacher_dir)]  # the second one re-tokenizes, in mini-batches too
    plain = MultiTeacherAvgLoss(plain_student, teachers=teachers, **kwargs)
    cached = CachedMultiTeacherAvgLoss(plain_student, teachers=teachers, mini_batch_size=4, **kwargs)
    assert cached.num_views == plain.num_views
    assert_same(loss_and_grads(cached, features, None), loss_and_grads(plain, features, None))


def test_duplicate_sentences_are_masked_as_in_the_plain_loss(plain_student, teacher, corpus):
    texts = corpus[:6] + corpus[:3]  # copies of a sentence are neither negatives nor candidates of each other
    features = plain_student.preprocess(texts)
    plain = GroupPDistillLoss(plain_student, teacher=teacher)
    cached = CachedGroupPDistillLoss(plain_student, teacher=teacher, mini_batch_size=4)
    assert_same(loss_and_grads(cached, features, None), loss_and_grads(plain, features, None))


def test_token_budget_mini_batches_equal_plain(plain_student, teacher, corpus):
    features = plain_student.preprocess(corpus[:12])
    plain = GroupPDistillLoss(plain_student, teacher=teacher)
    cached = CachedGroupPDistillLoss(plain_student, teacher=teacher, mini_batch_num_tokens=40)
    assert len(_minibatch_ranges(features, 32, 40)) > 2
    assert_same(loss_and_grads(cached, features, None), loss_and_grads(plain, features, None))


def reference_with_same_masks(loss, features, labels, seed):
    """The cached loss done by hand: the same mini-batches, embedded once, with gradients, in the same RNG order."""
    model = loss.model
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    targets = loss.batch_targets(features, labels)
    ranges = _minibatch_ranges(features, loss.mini_batch_size)
    views = [
        torch.cat(
            [model(_create_minibatch(model_inputs(features), begin, end))["sentence_embedding"]
             for begin, end in ranges]
        )
        for _ in range(loss.num_views)
    ]
    value = loss.loss_from_embeddings(views, targets)
    value.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return (value.item(), grads), views, torch.get_rng_state()


@pytest.mark.parametrize("group_p", [0.1, None])
@pytest.mark.parametrize("mini_batch_size", [3, 16])
def test_dropout_views_replay_the_first_pass_masks(student, teacher, corpus, mini_batch_size, group_p):
    student.train()
    features = student.preprocess(corpus[:BATCH])
    loss = CachedGroupPDistillLoss(student, teacher=teacher, group_p=group_p, mini_batch_size=mini_batch_size)
    expected, views, rng_after_reference = reference_with_same_masks(loss, features, None, seed=3)
    assert not torch.allclose(views[0], views[1], atol=1e-4)  # dropout is on: the two views differ

    result = loss_and_grads(loss, features, None, seed=3)
    assert_same(result, expected)
    # The replay runs inside a forked RNG: afterwards the global RNG is where the first pass left it.
    assert torch.equal(torch.get_rng_state(), rng_after_reference)
    # Another seed draws other masks, hence another loss.
    assert loss_and_grads(loss, features, None, seed=4)[0] != pytest.approx(result[0], abs=1e-6)


def test_without_gradients_the_cached_loss_is_the_plain_value(student, teacher, corpus):
    student.eval()
    features = student.preprocess(corpus[:BATCH])
    plain = GroupPDistillLoss(student, teacher=teacher)
    cached = CachedGroupPDistillLoss(student, teacher=teacher, mini_batch_size=3)
    with torch.no_grad():
        torch.manual_seed(0)
        expected = plain([dict(features)], None)
        torch.manual_seed(0)
        value = cached([dict(features)], None)
    assert not value.requires_grad
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_teachers_in_mini_batches_give_the_same_similarity(student, teacher, other_vocab_teacher_dir, corpus):
    ensemble = TeacherEnsemble(student, [teacher, load(other_vocab_teacher_dir)])
    features = student.preprocess(corpus[:11])
    expected = ensemble.similarity(features)
    for mini_batch_size in (1, 4, 11, 64):
        torch.testing.assert_close(ensemble.similarity(features, mini_batch_size=mini_batch_size), expected, **TOL)


def test_config_citation_and_arguments(student, teacher):
    loss = CachedGroupPDistillLoss(student, teacher=teacher, mini_batch_size=8)
    config = loss.get_config_dict()
    assert config["mini_batch_size"] == 8 and config["mini_batch_num_tokens"] is None
    assert config["group_p"] == 0.1
    assert "xu2023distillcse" in loss.citation
    assert loss.uses_gradient_cache
    assert loss.teachers.mini_batch_size == 8  # live teachers run in mini-batches too
    multi = CachedMultiTeacherAvgLoss(student, teachers=None)
    assert multi.get_config_dict()["mini_batch_size"] == 32
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="mini_batch_size"):
            CachedGroupPDistillLoss(student, teacher=teacher, mini_batch_size=bad)
    with pytest.raises(ValueError, match="mini_batch_num_tokens"):
        CachedGroupPDistillLoss(student, teacher=teacher, mini_batch_num_tokens=0)
    with pytest.raises(ValueError, match="group_p or group_size"):
        CachedMultiTeacherAvgLoss(student, teachers=[teacher], group_p=0.1, group_size=2)
    with pytest.raises(ValueError, match="exactly one text column"):
        feats = student.preprocess(["a b", "c d"])
        loss([feats, feats], None)


def test_trainer_with_precomputed_teacher(tiny_model_dir, teacher, corpus, tmp_path):
    student = load(tiny_model_dir)
    dataset = add_teacher_embeddings(Dataset.from_dict({"text": corpus}), [teacher], show_progress_bar=False)
    start = [p.detach().clone() for p in student.parameters()]
    loss = CachedGroupPDistillLoss(student, teacher=None, group_p=0.1, mini_batch_size=5)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=16, max_steps=3, learning_rate=1e-3,
        report_to=[], save_strategy="no", seed=0,
    )
    SentenceTransformerTrainer(model=student, args=args, train_dataset=dataset, loss=loss).train()
    assert any(not torch.equal(a, b) for a, b in zip(start, student.parameters()))
    assert all(p.isfinite().all() for p in student.parameters())


def test_fit_with_live_teachers(tiny_model_dir, teacher, corpus):
    student = load(tiny_model_dir)
    start = [p.detach().clone() for p in student.parameters()]
    loss = CachedMultiTeacherAvgLoss(student, teachers=[teacher], group_p=0.1, mini_batch_size=3)
    loader = DataLoader([InputExample(texts=[text]) for text in corpus], batch_size=16, shuffle=True)
    student.fit(train_objectives=[(loader, loss)], epochs=1, show_progress_bar=False)
    assert any(not torch.equal(a, b) for a, b in zip(start, student.parameters()))
    assert all(p.grad is None for p in teacher.parameters())
