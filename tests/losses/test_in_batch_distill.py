"""InBatchDistillLoss: the DistillCSE term stacked on any sentence-transformers loss (issue 12, item 1).

``InBatchDistillLoss(model, loss, ...)`` returns ``loss(features, labels) + distillation_weight * L_kd`` from the
base loss's own forward pass. ``L_kd``: each anchor (first column) has a distribution over the candidates, the
other columns' texts of the batch (positives, then negatives, full rows: its own positive included); with one
text column the candidates are the anchors themselves, diagonal excluded (DistillCSE's in-batch KD). The
teacher similarity comes from live teachers run on every column, or from the ``label`` column: ``(B, d)``
shared by all columns (what EmbedDistillLoss / MSELoss read) or ``(B, C, d)`` one per column, compared by cosine.

The values are checked against a KD computed here by hand, and ST's own patterns are applied to the stacked
loss: CachedMNRL + KD against MNRL + KD (tests/test_cmnrl.py, dropout replayed by RandContext), the ST wrappers,
the model card, the Trainer with prompts and an eval dataset, ``model.fit``, StaticEmbedding students.
Students are the tiny BERT of ``tests/conftest.py`` (dropout off until ``train()``); batches of 4 to 8.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict
from sentence_transformers import (
    InputExample,
    SentenceTransformer,
    SentenceTransformerTrainer,
)
from sentence_transformers.sentence_transformer.losses import (
    AdaptiveLayerLoss,
    CachedMultipleNegativesRankingLoss,
    EmbedDistillLoss,
    GISTEmbedLoss,
    Matryoshka2dLoss,
    MatryoshkaLoss,
    MSELoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.sentence_transformer.modules import StaticEmbedding
from torch.utils.data import DataLoader
from transformers import set_seed

import distillcse_st
from distillcse_st import GroupPDistillLoss, add_teacher_embeddings
from distillcse_st.losses import InBatchDistillLoss
from tests.helpers import load, training_args

TOL = {"rtol": 1e-5, "atol": 1e-5}
DIMS = [32, 16, 8]
TEACHER_TEMPERATURE, STUDENT_TEMPERATURE = 0.0125, 0.025
COLUMNS = {"pairs": ["anchor", "positive"], "triplets": ["anchor", "positive", "negative"]}


# --------------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def columns_data(corpus) -> dict[str, list[str]]:
    """Six (anchor, positive, negative) rows."""
    return {"anchor": corpus[0:6], "positive": corpus[6:12], "negative": corpus[12:18]}


# ---------------------------------------------------------------------------------------------- helpers


def kd_by_hand(anchors: torch.Tensor, candidates: torch.Tensor, teacher: torch.Tensor, exclude_self: bool):
    """DistillCSE's CE between softmax(T / 0.0125) and softmax(S / 0.025), S = cos(anchors, candidates)."""
    student = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T
    teacher = teacher.float()
    if exclude_self:
        keep = ~torch.eye(student.size(0), student.size(1), dtype=torch.bool)
        student, teacher = student[keep].view(student.size(0), -1), teacher[keep].view(teacher.size(0), -1)
    q = torch.softmax(teacher / TEACHER_TEMPERATURE, dim=-1)
    return -(q * torch.log_softmax(student / STUDENT_TEMPERATURE, dim=-1)).sum(-1).mean()


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def encode(model: SentenceTransformer, texts: list[str]) -> torch.Tensor:
    """Embeddings usable in autograd (``encode`` returns inference-mode tensors)."""
    return model.encode(texts, convert_to_tensor=True).clone()


def features_of(model: SentenceTransformer, data: dict[str, list[str]], names: list[str]) -> list[dict]:
    return [model.preprocess(data[name]) for name in names]


def labels_3d(teacher: SentenceTransformer, data: dict[str, list[str]], names: list[str], **kwargs) -> torch.Tensor:
    dataset = add_teacher_embeddings(Dataset.from_dict({name: data[name] for name in names}), [teacher],
                                     column=names, show_progress_bar=False, **kwargs)
    return torch.tensor(np.array(dataset["label"]))


def loss_and_grads(loss, model, make_features, labels, seed: int = 0):
    model.zero_grad(set_to_none=True)
    set_seed(seed)
    value = loss(make_features(), labels)
    value.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return value.item(), grads


def assert_same(result, expected, tol=TOL) -> None:
    (value, grads), (expected_value, expected_grads) = result, expected
    assert value == pytest.approx(expected_value, rel=tol["rtol"], abs=tol["atol"])
    assert expected_grads and set(grads) == set(expected_grads)
    assert any(g.abs().sum() > 0 for g in expected_grads.values())
    for name, grad in expected_grads.items():
        # Relative to the gradient's scale: elements near 0 sum terms as large as the largest, in another order.
        atol = tol["atol"] * max(1.0, grad.abs().max().item())
        torch.testing.assert_close(grads[name], grad, rtol=tol["rtol"], atol=atol)


# ------------------------------------------------------------------------------------------- the values


def test_importable_like_the_other_losses():
    assert distillcse_st.InBatchDistillLoss is InBatchDistillLoss
    assert "InBatchDistillLoss" in distillcse_st.losses.__all__


@pytest.mark.parametrize("layout", ["pairs", "triplets"])
def test_mnrl_plus_kd_by_hand(student, shared_vocab_teacher, columns_data, layout):
    """MNRL + lambda * KD of each anchor over all positives then negatives (full rows, own positive included)."""
    names = COLUMNS[layout]
    base = MultipleNegativesRankingLoss(student)
    loss = InBatchDistillLoss(student, base, teachers=[shared_vocab_teacher], group_p=None, distillation_weight=0.5)
    assert loss.teachers.must_retokenize == [False]
    value = loss(features_of(student, columns_data, names), None)

    with torch.no_grad():
        base_value = base(features_of(student, columns_data, names), None)
    student_columns = [encode(student, columns_data[name]) for name in names]
    teacher_columns = [encode(shared_vocab_teacher, columns_data[name]) for name in names]
    candidates, teacher_candidates = torch.cat(student_columns[1:]), torch.cat(teacher_columns[1:])
    assert candidates.size(0) == 6 * (len(names) - 1)
    kd = kd_by_hand(student_columns[0], candidates, cos(teacher_columns[0], teacher_candidates), exclude_self=False)
    assert value.item() == pytest.approx(base_value.item() + 0.5 * kd.item(), rel=1e-5)


def test_gist_base_with_a_guide_and_precomputed_labels_by_hand(student, shared_vocab_teacher, columns_data):
    """Table E1-mpnet's best recipe: GISTEmbedLoss with the teacher as guide, plus the term read from the
    precomputed (B, 2, d) labels; GIST ignores the labels, the term ignores the guide."""
    names = COLUMNS["pairs"]
    base = GISTEmbedLoss(student, guide=shared_vocab_teacher)
    loss = InBatchDistillLoss(student, base, group_p=None, distillation_weight=0.5)
    labels = labels_3d(shared_vocab_teacher, columns_data, names)
    value = loss(features_of(student, columns_data, names), labels)

    with torch.no_grad():
        base_value = base(features_of(student, columns_data, names), labels)
    anchors, positives = (encode(student, columns_data[name]) for name in names)
    teacher = cos(*(encode(shared_vocab_teacher, columns_data[name]) for name in names))
    kd = kd_by_hand(anchors, positives, teacher, exclude_self=False)
    assert value.item() == pytest.approx(base_value.item() + 0.5 * kd.item(), rel=1e-5)


def test_one_text_column_is_distillcse_in_batch_kd(student, teacher, corpus):
    """One column: the candidates are the other anchors, diagonal excluded, i.e. GroupPDistillLoss's KD term."""
    texts = corpus[:8]
    labels = torch.tensor(add_teacher_embeddings(Dataset.from_dict({"text": texts}), [teacher],
                                                 show_progress_bar=False)["label"])
    base = MSELoss(student)
    loss = InBatchDistillLoss(student, base, group_p=None)
    value = loss([student.preprocess(texts)], labels)
    with torch.no_grad():
        base_value = base([student.preprocess(texts)], labels)
        distillcse_kd = GroupPDistillLoss(student, teacher=None, group_p=None, contrastive_weight=0)(
            [student.preprocess(texts)], labels)
    kd = kd_by_hand(encode(student, texts), encode(student, texts), cos(labels, labels), exclude_self=True)
    assert distillcse_kd.item() == pytest.approx(kd.item(), rel=1e-5)
    assert value.item() == pytest.approx(base_value.item() + kd.item(), rel=1e-5)


@pytest.mark.parametrize("layout", ["pairs", "triplets"])
@pytest.mark.parametrize("group_p", [None, 0.1])
def test_live_teacher_equals_precomputed_3d_labels(student, shared_vocab_teacher, columns_data, layout, group_p):
    """add_teacher_embeddings(column=[...]) gives (B, C, d) labels: the same loss as the live teacher."""
    names = COLUMNS[layout]
    base = MultipleNegativesRankingLoss(student)
    live = InBatchDistillLoss(student, base, teachers=[shared_vocab_teacher], group_p=group_p)
    precomputed = InBatchDistillLoss(student, base, group_p=group_p)
    labels = labels_3d(shared_vocab_teacher, columns_data, names)
    assert labels.shape == (6, len(names), 32)
    torch.manual_seed(3)
    live_value = live(features_of(student, columns_data, names), None)
    torch.manual_seed(3)
    precomputed_value = precomputed(features_of(student, columns_data, names), labels)
    assert live_value.item() == pytest.approx(precomputed_value.item(), rel=1e-5)


def test_two_weighted_teachers_live_equals_precomputed(student, shared_vocab_teacher, teacher, columns_data):
    """K=2 teachers (one re-tokenizes decoded texts), weights 0.25 / 0.75: live average == stacked labels."""
    names = COLUMNS["pairs"]
    teachers, weights = [shared_vocab_teacher, teacher], [0.25, 0.75]
    live = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), teachers=teachers, weights=weights,
                              group_p=None)
    precomputed = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), group_p=None)
    data = {name: columns_data[name] for name in names}
    labels = torch.tensor(np.array(add_teacher_embeddings(Dataset.from_dict(data), teachers, weights=weights,
                                                          column=names, show_progress_bar=False)["label"]))
    live_value = live(features_of(student, columns_data, names), None)
    precomputed_value = precomputed(features_of(student, columns_data, names), labels)
    assert live_value.item() == pytest.approx(precomputed_value.item(), rel=1e-5)


def test_live_teacher_equals_precomputed_2d_labels_on_one_column(student, shared_vocab_teacher, corpus):
    texts = corpus[:8]
    labels = torch.tensor(add_teacher_embeddings(Dataset.from_dict({"text": texts}), [shared_vocab_teacher],
                                                 show_progress_bar=False)["label"])
    assert labels.ndim == 2
    live = InBatchDistillLoss(student, MSELoss(student), teachers=[shared_vocab_teacher], group_p=None)
    precomputed = InBatchDistillLoss(student, MSELoss(student), group_p=None)
    # The live term ignores the label column, which MSELoss still reads: same base, same KD.
    live_value = live([student.preprocess(texts)], labels)
    precomputed_value = precomputed([student.preprocess(texts)], labels)
    assert live_value.item() == pytest.approx(precomputed_value.item(), rel=1e-5)


def test_2d_labels_are_shared_by_every_column(student, teacher, columns_data):
    """(B, d) labels: one teacher embedding per row for all columns, i.e. (B, C, d) with that row repeated."""
    names = COLUMNS["triplets"]
    anchor_labels = encode(teacher, columns_data["anchor"])
    repeated = anchor_labels.unsqueeze(1).expand(-1, len(names), -1).contiguous()
    loss = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), group_p=None)
    shared = loss(features_of(student, columns_data, names), anchor_labels)
    per_column = loss(features_of(student, columns_data, names), repeated)
    assert shared.item() == pytest.approx(per_column.item(), rel=1e-6)


def test_label_rows_are_compared_by_cosine(student, teacher, corpus):
    """Raw teacher embeddings at any scale give the loss of add_teacher_embeddings rows (cosine EmbedDistillLoss)."""
    texts = corpus[:8]
    raw = encode(teacher, texts)
    scaled = raw * torch.linspace(0.5, 4.0, len(texts)).unsqueeze(1)
    loss = InBatchDistillLoss(student, EmbedDistillLoss(student, distance_metric="cosine"), group_p=None)
    with torch.no_grad():
        normalised = loss([student.preprocess(texts)], F.normalize(raw, dim=-1))
        rescaled = loss([student.preprocess(texts)], scaled)
    assert rescaled.item() == pytest.approx(normalised.item(), rel=1e-5)


@pytest.mark.parametrize("base_class", [EmbedDistillLoss, MSELoss])
@pytest.mark.parametrize("layout", ["one-column", "pairs"])
def test_one_label_column_serves_the_base_loss_and_the_term(student, teacher, columns_data, base_class, layout):
    """EmbedDistillLoss / MSELoss + KD, from the same (B, d) label column of raw teacher embeddings."""
    names = ["anchor"] if layout == "one-column" else COLUMNS["pairs"]
    labels = encode(teacher, columns_data["anchor"])
    base = base_class(student)
    loss = InBatchDistillLoss(student, base, group_p=None, distillation_weight=0.7)
    value = loss(features_of(student, columns_data, names), labels)
    with torch.no_grad():
        base_value = base(features_of(student, columns_data, names), labels)
    anchors = encode(student, columns_data["anchor"])
    candidates = anchors if layout == "one-column" else encode(student, columns_data["positive"])
    kd = kd_by_hand(anchors, candidates, cos(labels, labels), exclude_self=layout == "one-column")
    assert value.item() == pytest.approx(base_value.item() + 0.7 * kd.item(), rel=1e-5)


@pytest.mark.parametrize(
    ("make_base", "layout"),
    [
        (lambda model: MultipleNegativesRankingLoss(model), "triplets"),
        (lambda model: CachedMultipleNegativesRankingLoss(model, mini_batch_size=4), "pairs"),
        (lambda model: EmbedDistillLoss(model), "pairs"),
        (lambda model: MSELoss(model), "one-column"),
    ],
    ids=["mnrl", "cmnrl", "embed-distill", "mse"],
)
def test_distillation_weight_zero_is_exactly_the_base_loss(student, teacher, columns_data, make_base, layout):
    names = ["anchor"] if layout == "one-column" else COLUMNS[layout]
    labels = encode(teacher, columns_data["anchor"])
    expected = loss_and_grads(make_base(student), student, lambda: features_of(student, columns_data, names), labels)
    stacked = InBatchDistillLoss(student, make_base(student), distillation_weight=0.0)
    value, grads = loss_and_grads(stacked, student, lambda: features_of(student, columns_data, names), labels)
    assert value == expected[0]
    assert set(grads) == set(expected[1])
    assert all(torch.equal(grads[name], grad) for name, grad in expected[1].items())


# -------------------------------------------------------------------------- one forward pass, GradCache


def test_no_extra_student_forward_and_one_teacher_pass_per_column(student, shared_vocab_teacher, columns_data):
    names = COLUMNS["triplets"]
    student_rows, teacher_rows = [], []
    student.register_forward_hook(lambda module, args, output: student_rows.append(len(output["sentence_embedding"])))
    shared_vocab_teacher.register_forward_hook(
        lambda module, args, output: teacher_rows.append(len(output["sentence_embedding"])))
    MultipleNegativesRankingLoss(student)(features_of(student, columns_data, names), None)
    base_rows = list(student_rows)
    student_rows.clear()
    loss = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), teachers=[shared_vocab_teacher])
    loss(features_of(student, columns_data, names), None)
    assert student_rows == base_rows  # the base loss's forward passes, no more
    assert sum(teacher_rows) == 6 * len(names)


def test_cached_base_keeps_gradient_caching(student, shared_vocab_teacher, columns_data):
    """With CachedMNRL the student runs in mini-batches (without, then with gradients) and the term joins them."""
    names = COLUMNS["pairs"]
    loss = InBatchDistillLoss(student, CachedMultipleNegativesRankingLoss(student, mini_batch_size=2),
                              teachers=[shared_vocab_teacher], group_p=None)
    assert loss.uses_gradient_cache
    rows = []
    student.register_forward_hook(lambda module, args, output: rows.append(len(output["sentence_embedding"])))
    value = loss(features_of(student, columns_data, names), None)
    assert rows and max(rows) <= 2 and sum(rows) == 6 * len(names)  # first pass, no gradients
    value.backward()  # GradCache replays the mini-batches with gradients
    assert max(rows) <= 2 and sum(rows) == 2 * 6 * len(names)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


@pytest.mark.parametrize(
    ("mini_batch_size", "group_p", "live", "layout"),
    [(2, None, True, "pairs"), (4, 0.1, False, "pairs"), (16, 0.1, True, "triplets"), (3, None, False, "triplets")],
)
def test_cached_mnrl_kd_equals_mnrl_kd(student, shared_vocab_teacher, columns_data, mini_batch_size, group_p, live,
                                       layout):
    """Same loss and parameter gradients, no dropout (ST's test_cmnrl_same_grad); Group-P under one seed."""
    names = COLUMNS[layout]
    teachers = [shared_vocab_teacher] if live else None
    labels = None if live else labels_3d(shared_vocab_teacher, columns_data, names)
    plain = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), teachers=teachers, group_p=group_p)
    cached = InBatchDistillLoss(student, CachedMultipleNegativesRankingLoss(student, mini_batch_size=mini_batch_size),
                                teachers=teachers, group_p=group_p)
    make = lambda: features_of(student, columns_data, names)  # noqa: E731
    assert_same(loss_and_grads(cached, student, make, labels, seed=7), loss_and_grads(plain, student, make, labels,
                                                                                    seed=7))


@pytest.mark.parametrize(
    ("cached_rows", "same_grad", "scaler", "precision"),
    [(slice(0, 6), True, 1.0, 1e-5), (slice(1, 6), False, 1.0, 1e-5), (slice(0, 6), True, 1000.0, 1e-4)],
    ids=["same-data", "other-data", "scaled"],
)
def test_cached_mnrl_kd_same_grad_with_dropout(student, shared_vocab_teacher, columns_data, cached_rows, same_grad,
                                               scaler, precision):
    """ST's test_cmnrl_same_grad with dropout on: GradCache's RandContext replays the first pass's masks, so with
    one mini-batch per column CachedMNRL + KD equals MNRL + KD, Group-P included."""
    student.train()
    names = COLUMNS["pairs"]
    other = {name: values[cached_rows] for name, values in columns_data.items()}
    plain = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), teachers=[shared_vocab_teacher])
    cached = InBatchDistillLoss(student, CachedMultipleNegativesRankingLoss(student, mini_batch_size=8),
                                teachers=[shared_vocab_teacher])

    def scaled(loss):
        return lambda features, labels: loss(features, labels) * scaler

    expected = loss_and_grads(scaled(plain), student, lambda: features_of(student, columns_data, names), None, 42)
    result = loss_and_grads(scaled(cached), student, lambda: features_of(student, other, names), None, 42)
    nclose = sum(
        torch.allclose(result[1][name], grad, rtol=precision, atol=precision * grad.abs().max().clamp_min(1))
        for name, grad in expected[1].items()
    )
    if same_grad:
        assert result[0] == pytest.approx(expected[0], rel=1e-5)
        assert nclose == len(expected[1])
    else:
        assert result[0] != pytest.approx(expected[0], rel=1e-5)
        assert nclose != len(expected[1])
    # Dropout is on: another seed draws other masks, hence another loss.
    assert loss_and_grads(scaled(plain), student, lambda: features_of(student, columns_data, names), None, 43)[0] \
        != pytest.approx(expected[0], rel=1e-6)


# --------------------------------------------------------------------------------------------- wrappers


def test_matryoshka_with_labels_as_wide_as_the_student(student, shared_vocab_teacher, columns_data):
    """MatryoshkaLoss slices (B, C, d) labels; the KD term keeps the full teacher similarity at every dimension."""
    names = COLUMNS["pairs"]
    labels = labels_3d(shared_vocab_teacher, columns_data, names)
    loss = MatryoshkaLoss(student, InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), group_p=None),
                          DIMS)
    value = loss(features_of(student, columns_data, names), labels)
    with torch.no_grad():
        base_value = MatryoshkaLoss(student, MultipleNegativesRankingLoss(student), DIMS)(
            features_of(student, columns_data, names), labels)
    anchors, positives = encode(student, columns_data["anchor"]), encode(student, columns_data["positive"])
    similarity = cos(encode(shared_vocab_teacher, columns_data["anchor"]),
                     encode(shared_vocab_teacher, columns_data["positive"]))
    kd = sum(kd_by_hand(anchors[:, :dim], positives[:, :dim], similarity, exclude_self=False) for dim in DIMS)
    assert value.item() == pytest.approx(base_value.item() + kd.item(), rel=1e-5)


@pytest.mark.parametrize("live", [True, False], ids=["live", "precomputed"])
def test_matryoshka_cached_equals_plain(student, shared_vocab_teacher, columns_data, live):
    names = COLUMNS["pairs"]
    teachers = [shared_vocab_teacher] if live else None
    labels = None if live else labels_3d(shared_vocab_teacher, columns_data, names)
    plain = MatryoshkaLoss(
        student, InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), teachers=teachers), DIMS)
    cached = MatryoshkaLoss(
        student,
        InBatchDistillLoss(student, CachedMultipleNegativesRankingLoss(student, mini_batch_size=4), teachers=teachers),
        DIMS,
    )
    make = lambda: features_of(student, columns_data, names)  # noqa: E731
    assert_same(loss_and_grads(cached, student, make, labels, seed=1), loss_and_grads(plain, student, make, labels,
                                                                                    seed=1))


@pytest.mark.parametrize("live", [True, False], ids=["live", "precomputed"])
def test_adaptive_layer_loss_adds_the_term_at_every_layer(student, shared_vocab_teacher, columns_data, live):
    """AdaptiveLayerLoss(all layers, no KL) around MNRL + KD = the same wrapper around MNRL + the KD of each layer."""
    names = COLUMNS["pairs"]
    labels = None if live else labels_3d(shared_vocab_teacher, columns_data, names)
    kwargs = {"n_layers_per_step": -1, "kl_temperature": 0.0}
    stacked = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student),
                                 teachers=[shared_vocab_teacher] if live else None, group_p=None)
    value = AdaptiveLayerLoss(student, stacked, **kwargs)(features_of(student, columns_data, names), labels)
    with torch.no_grad():
        base_value = AdaptiveLayerLoss(student, MultipleNegativesRankingLoss(student), **kwargs)(
            features_of(student, columns_data, names), labels)

    def layers(texts):
        features = student.preprocess(texts)
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            hidden = student[0].auto_model(**inputs, output_hidden_states=True).hidden_states
        mask = features["attention_mask"].unsqueeze(-1).float()
        return [(state * mask).sum(1) / mask.sum(1) for state in hidden]

    anchors, positives = layers(columns_data["anchor"]), layers(columns_data["positive"])
    similarity = cos(encode(shared_vocab_teacher, columns_data["anchor"]),
                     encode(shared_vocab_teacher, columns_data["positive"]))
    per_layer = [kd_by_hand(a, p, similarity, exclude_self=False) for a, p in zip(anchors, positives)]
    kd = per_layer[-1] + sum(per_layer[:-1]) / len(per_layer[:-1])
    assert value.item() == pytest.approx(base_value.item() + kd.item(), rel=1e-4)


def test_adaptive_layer_loss_warns_about_a_cached_base_like_st_and_fails_naming_the_alternative(student, corpus):
    loss = InBatchDistillLoss(student, CachedMultipleNegativesRankingLoss(student), teachers=None)
    with pytest.warns(UserWarning, match="AdaptiveLayerLoss is not compatible with InBatchDistillLoss"):
        wrapped = AdaptiveLayerLoss(student, loss)
    features = [student.preprocess(corpus[:4]), student.preprocess(corpus[4:8])]
    with pytest.raises(ValueError, match="AdaptiveLayerLoss cannot wrap.*without 'Cached'"):
        wrapped(features, torch.randn(4, 32))


def test_a_wrapped_cached_base_still_works_on_its_own(student, corpus):
    base = CachedMultipleNegativesRankingLoss(student, mini_batch_size=2)
    features = [student.preprocess(corpus[:4]), student.preprocess(corpus[4:8])]
    alone = base(features, None).item()
    InBatchDistillLoss(student, base, teachers=None)
    assert base([student.preprocess(corpus[:4]), student.preprocess(corpus[4:8])], None).item() == pytest.approx(alone)


@pytest.mark.parametrize("live", [True, False], ids=["live", "precomputed"])
def test_matryoshka_2d_trains(student, shared_vocab_teacher, columns_data, live):
    """ST's defaults: one sampled layer and one sampled dimension per step, dropout on."""
    student.train()
    names = COLUMNS["triplets"]
    labels = None if live else labels_3d(shared_vocab_teacher, columns_data, names)
    stacked = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student),
                                 teachers=[shared_vocab_teacher] if live else None)
    loss = Matryoshka2dLoss(student, stacked, DIMS)
    for seed in range(3):
        value, grads = loss_and_grads(loss, student, lambda: features_of(student, columns_data, names), labels, seed)
        assert np.isfinite(value) and any(g.abs().sum() > 0 for g in grads.values())


# ----------------------------------------------------------------------------------------- student types


def test_static_embedding_student_with_3d_labels(student, shared_vocab_teacher, columns_data):
    torch.manual_seed(0)
    model = SentenceTransformer(modules=[StaticEmbedding(student.tokenizer, embedding_dim=32)], device="cpu")
    names = COLUMNS["pairs"]
    labels = labels_3d(shared_vocab_teacher, columns_data, names)
    base = MultipleNegativesRankingLoss(model)
    loss = InBatchDistillLoss(model, base, group_p=None)
    value = loss(features_of(model, columns_data, names), labels)
    value.backward()
    with torch.no_grad():
        base_value = base(features_of(model, columns_data, names), labels)
    similarity = cos(labels[:, 0], labels[:, 1])
    kd = kd_by_hand(encode(model, columns_data["anchor"]), encode(model, columns_data["positive"]), similarity,
                    exclude_self=False)
    assert value.item() == pytest.approx(base_value.item() + kd.item(), rel=1e-5)
    assert model[0].embedding.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------- Trainer, prompts, card, fit


def test_trainer_prompts_live_teacher_equals_precomputed(student, shared_vocab_teacher, columns_data, tmp_path):
    """Per-column prompts of the Trainer, given to add_teacher_embeddings: live and precomputed agree."""
    names = COLUMNS["pairs"]
    prompts = {"anchor": "query: ", "positive": "document: "}
    data = {name: columns_data[name] for name in names}
    dataset = add_teacher_embeddings(Dataset.from_dict(data), [shared_vocab_teacher], column=names, prompts=prompts,
                                     show_progress_bar=False)
    precomputed = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), group_p=None)
    args = training_args(tmp_path, per_device_train_batch_size=6, max_steps=1, prompts=prompts)
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=dataset, loss=precomputed)
    features, labels = trainer.collect_features(next(iter(trainer.get_train_dataloader())))
    live = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), teachers=[shared_vocab_teacher],
                              group_p=None)
    with torch.no_grad():
        live_value = live([dict(f) for f in features], None)
        precomputed_value = precomputed([dict(f) for f in features], labels)
    assert precomputed_value.item() == pytest.approx(live_value.item(), rel=1e-5)
    unprompted = labels_3d(shared_vocab_teacher, columns_data, names)
    assert not torch.allclose(unprompted, labels_3d(shared_vocab_teacher, columns_data, names, prompts=prompts))


def test_trainer_with_eval_dataset_model_card_and_save_load(tiny_model_dir, shared_vocab_teacher, columns_data,
                                                            corpus, tmp_path):
    """CachedMNRL + KD on pairs with (B, 2, d) labels: train and evaluate (last batches of one), then the card
    shows the stacked loss, its nested base config and both citations, and the model reloads."""
    student = load(tiny_model_dir)
    names = COLUMNS["pairs"]
    train = add_teacher_embeddings(Dataset.from_dict({"anchor": corpus[:5], "positive": corpus[5:10]}),
                                   [shared_vocab_teacher], column=names, show_progress_bar=False)
    evaluation = add_teacher_embeddings(Dataset.from_dict({"anchor": corpus[20:25], "positive": corpus[25:30]}),
                                        [shared_vocab_teacher], column=names, show_progress_bar=False)
    loss = InBatchDistillLoss(student, CachedMultipleNegativesRankingLoss(student, mini_batch_size=2), group_p=0.1)
    args = training_args(tmp_path, num_train_epochs=1, eval_strategy="epoch", dataloader_drop_last=False)
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=train, eval_dataset=evaluation,
                                         loss=loss)
    start = [p.detach().clone() for p in student.parameters()]
    trainer.train()
    assert trainer.state.global_step == 2  # batches of 4 and 1
    evaluations = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    assert evaluations and all(np.isfinite(evaluations))
    assert any(not torch.equal(a, b) for a, b in zip(start, student.parameters()))

    student.save(str(tmp_path / "saved"))
    card = (tmp_path / "saved" / "README.md").read_text()
    for expected in ("InBatchDistillLoss", "CachedMultipleNegativesRankingLoss", "loss_config", "group_p",
                     "mini_batch_size", "xu2023distillcse", "gao2021scaling"):
        assert expected in card, expected
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    torch.testing.assert_close(reloaded.encode(corpus[:4], convert_to_tensor=True),
                               student.encode(corpus[:4], convert_to_tensor=True), atol=1e-6, rtol=0)


def test_multi_dataset_training_beside_embed_distill_loss(tiny_model_dir, shared_vocab_teacher, corpus, tmp_path):
    """ST's multi-objective training (table E's row on top of ST's route): a DatasetDict of pairs, our term over
    MNRL with (B, 2, d) labels, and of texts, EmbedDistillLoss with (B, d) labels; each loss gets its own batches."""
    student = load(tiny_model_dir)
    names = COLUMNS["pairs"]
    pairs = add_teacher_embeddings(Dataset.from_dict({"anchor": corpus[:8], "positive": corpus[8:16]}),
                                   [shared_vocab_teacher], column=names, show_progress_bar=False)
    texts = add_teacher_embeddings(Dataset.from_dict({"text": corpus[:16]}), [shared_vocab_teacher],
                                   show_progress_bar=False)
    loss = {"pairs": InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), group_p=None),
            "distill": EmbedDistillLoss(student, distance_metric="cosine")}
    label_dims: dict[str, list[int]] = {"pairs": [], "distill": []}
    for name, part in loss.items():
        part.register_forward_hook(lambda module, args, output, name=name: label_dims[name].append(args[1].dim()))
    trainer = SentenceTransformerTrainer(model=student, args=training_args(tmp_path, num_train_epochs=1),
                                         train_dataset=DatasetDict({"pairs": pairs, "distill": texts}), loss=loss)
    trainer.train()
    assert label_dims == {"pairs": [3, 3], "distill": [2, 2, 2, 2]}  # every batch of each, proportionally


def test_fit_with_3d_labels(tiny_model_dir, shared_vocab_teacher, columns_data, tmp_path, monkeypatch):
    """The classic fit: InputExample(texts=[anchor, positive], label=(2, d) teacher rows)."""
    monkeypatch.chdir(tmp_path)  # fit's Trainer writes under ./checkpoints
    student = load(tiny_model_dir)
    names = COLUMNS["pairs"]
    labels = labels_3d(shared_vocab_teacher, columns_data, names).tolist()  # fit stores labels in a Dataset
    examples = [InputExample(texts=[a, p], label=label)
                for a, p, label in zip(columns_data["anchor"], columns_data["positive"], labels)]
    loss = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student))
    start = [p.detach().clone() for p in student.parameters()]
    student.fit(train_objectives=[(DataLoader(examples, batch_size=3), loss)], epochs=1, warmup_steps=0,
                optimizer_params={"lr": 1e-3}, show_progress_bar=False)
    assert any(not torch.equal(a, b) for a, b in zip(start, student.parameters()))
    assert all(torch.isfinite(p).all() for p in student.parameters())


# ------------------------------------------------------------------------------- config, citation, errors


def test_config_nests_the_base_loss_and_citation_carries_both(student, teacher):
    base = CachedMultipleNegativesRankingLoss(student, mini_batch_size=8)
    loss = InBatchDistillLoss(student, base, teachers=[teacher], group_p=0.2, distillation_weight=0.5)
    config = loss.get_config_dict()
    assert config["loss"] == "CachedMultipleNegativesRankingLoss"
    assert config["loss_config"] == base.get_config_dict()
    assert config["group_p"] == 0.2 and config["distillation_weight"] == 0.5 and len(config["teachers"]) == 1
    assert config["gather_across_devices"] is False
    json.dumps(config)
    assert base.citation.strip() in loss.citation and "xu2023distillcse" in loss.citation
    precomputed = InBatchDistillLoss(student, EmbedDistillLoss(student))
    assert precomputed.get_config_dict()["loss"] == "EmbedDistillLoss"
    assert EmbedDistillLoss(student).citation.strip() in precomputed.citation


def test_bad_inputs_are_refused_with_the_reason(student, teacher, columns_data):
    names = COLUMNS["triplets"]
    loss = InBatchDistillLoss(student, MultipleNegativesRankingLoss(student))
    with pytest.raises(ValueError, match="label"):
        loss(features_of(student, columns_data, names), None)
    with pytest.raises(ValueError, match="shape|column"):
        loss(features_of(student, columns_data, names), torch.randn(6, 2, 32))  # 2 label rows for 3 columns
    with pytest.raises(ValueError, match="NaN"):
        loss(features_of(student, columns_data, names), torch.full((6, 32), float("nan")))
    with pytest.raises(ValueError):
        InBatchDistillLoss(student, loss)  # the term twice
    with pytest.raises(ValueError, match="group_p"):
        InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), group_p=0.0)
    with pytest.raises(ValueError, match="weights"):
        InBatchDistillLoss(student, MultipleNegativesRankingLoss(student), teachers=None, weights=[1.0])


def test_a_batch_of_one_text_column_row_gives_the_base_loss_with_one_warning(student, teacher, caplog):
    """One text, one column: no in-batch candidate, the term is zero (warned once) and the base loss stands."""
    labels = encode(teacher, ["A lonely sentence."])
    base = MSELoss(student)
    loss = InBatchDistillLoss(student, base)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            value = loss([student.preprocess(["A lonely sentence."])], labels)
            value.backward()
    with torch.no_grad():
        expected = base([student.preprocess(["A lonely sentence."])], labels)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert len([r for r in caplog.records if "batch" in r.message and "zero" in r.message]) == 1  # warned once
