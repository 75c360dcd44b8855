"""GroupPDistillLoss and MultiTeacherAvgLoss: values, teachers, training paths, saving."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from datasets import Dataset
from sentence_transformers import (
    InputExample,
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from torch.utils.data import DataLoader

from distillcse_st import GroupPDistillLoss, MultiTeacherAvgLoss, add_teacher_embeddings
from distillcse_st.similarity import in_batch_distillation_loss, simcse_contrastive_loss, weighted_similarity
from tests.helpers import load


def batch_features(model: SentenceTransformer, texts: list[str]) -> list[dict[str, torch.Tensor]]:
    return [model.preprocess(texts)]


def test_loss_is_contrastive_plus_weighted_distillation(student, teacher, corpus):
    student.eval()  # no dropout: both views are equal and the terms can be recomputed by hand
    texts = corpus[:8]
    loss = GroupPDistillLoss(student, teacher=teacher, group_p=None, distillation_weight=0.5)
    value = loss(batch_features(student, texts), None)
    with torch.no_grad():
        z = student.encode(texts, convert_to_tensor=True)
        t = teacher.encode(texts, convert_to_tensor=True)
    expected = simcse_contrastive_loss(z, z) + 0.5 * in_batch_distillation_loss(z, weighted_similarity([t], [1.0]))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_multi_teacher_average_and_precomputed_labels_give_the_same_loss(student, teacher, other_vocab_teacher_dir,
                                                                         corpus):
    other = load(other_vocab_teacher_dir)
    student.eval()
    texts = corpus[:12]
    live = MultiTeacherAvgLoss(student, teachers=[teacher, other], weights=[0.25, 0.75], group_p=0.2)
    dataset = add_teacher_embeddings(Dataset.from_dict({"text": texts}), [teacher, other], weights=[0.25, 0.75],
                                     show_progress_bar=False)
    labels = torch.tensor(dataset["label"])
    precomputed = MultiTeacherAvgLoss(student, teachers=None, group_p=0.2)
    torch.manual_seed(7)
    live_value = live(batch_features(student, texts), None)
    torch.manual_seed(7)
    precomputed_value = precomputed(batch_features(student, texts), labels)
    assert live_value.item() == pytest.approx(precomputed_value.item(), rel=1e-5)


def test_single_teacher_multi_teacher_loss_equals_group_p_loss(student, teacher, corpus):
    student.eval()
    features = batch_features(student, corpus[:8])
    torch.manual_seed(1)
    single = GroupPDistillLoss(student, teacher=teacher)(features, None)
    torch.manual_seed(1)
    multi = MultiTeacherAvgLoss(student, teachers=[teacher])(batch_features(student, corpus[:8]), None)
    assert single.item() == pytest.approx(multi.item(), rel=1e-6)


def test_teacher_with_another_tokenizer_sees_the_same_texts(student, other_vocab_teacher_dir, corpus):
    other = load(other_vocab_teacher_dir)
    assert other.max_seq_length != student.max_seq_length
    loss = GroupPDistillLoss(student, teacher=other)
    assert loss.teachers.must_retokenize == [True]
    texts = corpus[:6]
    live = loss.teachers.similarity(student.preprocess(texts))
    direct = weighted_similarity([other.encode(texts, convert_to_tensor=True)], [1.0])
    assert torch.allclose(live, direct, atol=1e-5)


def test_gradients_reach_only_the_student(student, teacher, corpus):
    loss = GroupPDistillLoss(student, teacher=teacher)
    loss.train()
    assert not teacher.training  # teachers stay in eval mode (no dropout) whatever the loss's mode
    loss(batch_features(student, corpus[:8]), None).backward()
    encoder_grads = [p.grad for name, p in student.named_parameters() if ".encoder." in name]
    assert encoder_grads and all(g is not None and g.abs().sum() > 0 for g in encoder_grads)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_group_p_is_reproducible_under_a_seed_and_random_otherwise(student, teacher, corpus):
    student.eval()
    loss = GroupPDistillLoss(student, teacher=teacher, group_p=1.0, contrastive_weight=0)
    features = batch_features(student, corpus[:16])
    torch.manual_seed(3)
    first = loss(features, None).item()
    torch.manual_seed(3)
    assert loss(batch_features(student, corpus[:16]), None).item() == first
    values = {round(loss(batch_features(student, corpus[:16]), None).item(), 6) for _ in range(5)}
    assert len(values) > 1


def test_distillation_only_runs_one_student_view(student, teacher, corpus):
    calls = []
    student.register_forward_hook(lambda module, args, output: calls.append(args[0]["input_ids"].shape[0]))
    GroupPDistillLoss(student, teacher=teacher, contrastive_weight=0)(batch_features(student, corpus[:8]), None)
    GroupPDistillLoss(student, teacher=teacher)(batch_features(student, corpus[:8]), None)
    assert calls == [8, 16]  # 16: both SimCSE views in one merged forward pass


def test_simcse_only_needs_no_teacher(student, corpus):
    value = GroupPDistillLoss(student, teacher=None, distillation_weight=0)(batch_features(student, corpus[:8]), None)
    assert torch.isfinite(value)


def test_config_and_citation(student, teacher):
    loss = MultiTeacherAvgLoss(student, teachers=[teacher, teacher], group_p=0.1)
    config = loss.get_config_dict()
    assert config["weights"] == [0.5, 0.5] and config["group_p"] == 0.1 and len(config["teachers"]) == 2
    json.dumps(config)
    assert "2310.13499" in loss.citation and "Xu" in loss.citation


def test_teacher_names_in_the_config_hold_no_local_path(student, tiny_teacher_dir):
    """The config lands in the shared model card: a teacher loaded from a directory is named by its name only."""
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    names = GroupPDistillLoss(student, teacher=teacher).get_config_dict()["teachers"]
    assert names and all("/" not in name and str(tiny_teacher_dir.parent) not in name for name in names)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_p": 0.0}, "group_p"),
        ({"group_p": 1.5}, "group_p"),
        ({"group_p": 0.1, "group_size": 4}, "not both"),
        ({"group_p": None, "group_size": 0}, "group_size"),
        ({"teacher_temperature": 0.0}, "teacher_temperature"),
        ({"student_temperature": -1.0}, "student_temperature"),
        ({"contrastive_temperature": float("nan")}, "contrastive_temperature"),
        ({"divergence": "mse"}, "divergence"),
        ({"contrastive_weight": 0, "distillation_weight": 0}, "nothing to train"),
    ],
)
def test_bad_arguments_are_refused(student, teacher, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GroupPDistillLoss(student, teacher=teacher, **kwargs)


@pytest.mark.parametrize(
    ("weights", "message"), [([1.0], "2 teachers"), ([-1.0, 2.0], "non-negative"), ([0.0, 0.0], "not all zero")]
)
def test_bad_weights_are_refused(student, teacher, weights, message):
    with pytest.raises(ValueError, match=message):
        MultiTeacherAvgLoss(student, teachers=[teacher, teacher], weights=weights)


def test_bad_batches_are_refused(student, teacher, corpus):
    loss = MultiTeacherAvgLoss(student, teachers=None)
    features = batch_features(student, corpus[:4])
    with pytest.raises(ValueError, match="label"):
        loss(features, None)
    with pytest.raises(ValueError, match="shape"):
        loss(batch_features(student, corpus[:4]), torch.randn(3, 8))
    with pytest.raises(ValueError, match="NaN"):
        loss(batch_features(student, corpus[:4]), torch.full((4, 8), float("nan")))
    with pytest.raises(ValueError, match="exactly one text column"):
        loss(features + features, torch.randn(4, 8))


def test_trainer_step_lowers_the_loss_and_saves_a_plain_st_model(tiny_model_dir, teacher, corpus, tmp_path):
    student = load(tiny_model_dir)
    dataset = add_teacher_embeddings(Dataset.from_dict({"text": corpus}), [teacher], show_progress_bar=False)
    loss = GroupPDistillLoss(student, teacher=None, group_p=None, contrastive_weight=0)
    features = batch_features(student, corpus)
    labels = torch.tensor(dataset["label"])
    student.eval()
    with torch.no_grad():
        before = loss(features, labels).item()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=32, max_steps=5, learning_rate=5e-3,
        report_to=[], save_strategy="no", seed=0,
    )
    SentenceTransformerTrainer(model=student, args=args, train_dataset=dataset, loss=loss).train()
    student.eval()
    with torch.no_grad():
        after = loss(batch_features(student, corpus), labels).item()
    assert after < before

    student.save(str(tmp_path / "saved"))
    saved = {path.name for path in (tmp_path / "saved").rglob("*")}
    assert not any("teacher" in name or name.endswith((".pkl", ".pickle", ".pt")) for name in saved)
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "GroupPDistillLoss" in card and "2310.13499" in card
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert torch.allclose(reloaded.encode(corpus[:4], convert_to_tensor=True),
                          student.encode(corpus[:4], convert_to_tensor=True), atol=1e-6)


def test_fit_with_a_live_teacher(tiny_model_dir, teacher, corpus, tmp_path):
    student = load(tiny_model_dir)
    start = [p.detach().clone() for p in student.parameters()]
    loss = GroupPDistillLoss(student, teacher=teacher, group_p=0.1)
    loader = DataLoader([InputExample(texts=[text]) for text in corpus], batch_size=16, shuffle=True)
    student.fit(train_objectives=[(loader, loss)], epochs=1, show_progress_bar=False)
    assert any(not torch.equal(a, b) for a, b in zip(start, student.parameters()))
    assert all(p.grad is None for p in teacher.parameters())


def test_saved_model_loads_without_the_plugin(tiny_model_dir, teacher, corpus, tmp_path):
    student = load(tiny_model_dir)
    GroupPDistillLoss(student, teacher=teacher)  # a loss is attached to nothing the model saves
    student.save(str(tmp_path / "model"))
    expected = student.encode(corpus[:5])
    script = (
        "import sys, json, importlib.util\n"
        "sys.modules['distillcse_st'] = None  # importing the plugin now fails\n"
        "assert importlib.util.find_spec is not None\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"model = SentenceTransformer({str(tmp_path / 'model')!r}, device='cpu')\n"
        f"print(json.dumps(model.encode({corpus[:5]!r}).tolist()))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=str(tmp_path), check=True)
    embeddings = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    assert (embeddings - torch.from_numpy(expected)).abs().max().item() <= 1e-6
