"""Issue 6.2: logits of 1 / 0.0125 = 80 stay finite under bf16 / fp16, and bf16 training tracks float32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from distillcse_st import GroupPDistillLoss
from distillcse_st.losses.base import BatchTargets
from distillcse_st.similarity import cosine_similarity_matrix, duplicate_mask
from tests.helpers import load
from tests.reliability.conftest import run_trainer, weights

# bf16 keeps 8 bits of mantissa: a cosine of 1 - 2^-8 becomes 1, a logit moves by up to 80 * 2^-8 ~ 0.3.
AUTOCAST_LOSS_RTOL = 5e-2
# Trainer(bf16=True): the student's forward pass runs under CPU bf16 autocast (accelerate), the loss in float32.
BF16_LOSS_RTOL = 1e-3
BF16_UPDATE_RTOL = 1e-2


def extreme_embeddings(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two views whose positives are exact copies (contrastive logits 1 / 0.05), near-parallel rows
    (student logits near 1 / 0.025) and a teacher whose top candidate has cosine 1 (logit 80)."""
    torch.manual_seed(0)
    base = torch.randn(8, 32)
    base[1] = base[0] + 1e-3 * torch.randn(32)  # near-duplicates: logits at the 80 ceiling
    base[3] = -base[2]  # exact opposites: logits at -80
    view1 = base.clone().to(dtype).requires_grad_()
    view2 = base.clone().to(dtype).requires_grad_()
    teacher = cosine_similarity_matrix(base, base)
    teacher[4, 5] = teacher[5, 4] = 1.0
    return view1, view2, teacher


def float16_autocast_available() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            return torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float16
    except (RuntimeError, AssertionError):  # pragma: no cover - depends on the torch build
        return False


@pytest.mark.parametrize("divergence", ["ce", "kl", "js"])
@pytest.mark.parametrize("group_p", [None, 0.5])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loss_and_gradients_stay_finite_at_logit_80_under_autocast(student, dtype, group_p, divergence):
    if dtype == torch.float16 and not float16_autocast_available():
        pytest.skip("float16 autocast is not available on this CPU build")
    loss = GroupPDistillLoss(student, teacher=None, group_p=group_p, divergence=divergence)
    view1, view2, teacher = extreme_embeddings(dtype)
    groups = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])  # and one exact duplicate pair, masked
    assert duplicate_mask(groups).any()
    with torch.autocast("cpu", dtype=dtype):
        torch.manual_seed(1)
        value = loss.loss_from_embeddings([view1, view2], BatchTargets(teacher, groups))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    for view in (view1, view2):
        assert view.grad is not None and torch.isfinite(view.grad).all() and view.grad.abs().sum() > 0
    reference_views = [view1.detach().float(), view2.detach().float()]
    torch.manual_seed(1)
    reference = loss.loss_from_embeddings(reference_views, BatchTargets(teacher, groups))
    assert value.item() == pytest.approx(reference.item(), rel=AUTOCAST_LOSS_RTOL)


def test_half_precision_embeddings_without_autocast(student):
    loss = GroupPDistillLoss(student, teacher=None, group_p=0.5)
    for dtype in (torch.bfloat16, torch.float16):
        view1, view2, teacher = extreme_embeddings(dtype)
        value = loss.loss_from_embeddings([view1, view2], BatchTargets(teacher.to(dtype), None))
        value.backward()
        assert value.dtype == torch.float32 and torch.isfinite(value)
        assert torch.isfinite(view1.grad).all() and torch.isfinite(view2.grad).all()


def test_logits_are_computed_in_float32_under_autocast():
    a = F.normalize(torch.randn(4, 16), dim=-1).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cosine_similarity_matrix(a, a).dtype == torch.float32


def test_bf16_training_tracks_float32(tiny_model_dir, teacher, tmp_path):
    """Four SGD steps with Trainer(bf16=True) against float32, same seed and dropout masks.

    SGD, because its update is proportional to the gradient: with Adam, parameters whose gradient is
    near 0 move by +-lr on the sign of bf16 noise, and a max-abs weight difference says nothing.
    """
    autocast_seen: list[bool] = []

    class WatchAutocast(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model[0].register_forward_hook(lambda *_: autocast_seen.append(torch.is_autocast_enabled("cpu")))

    start = weights(load(tiny_model_dir))
    runs = {}
    for bf16 in (False, True):
        student, trainer = run_trainer(
            tiny_model_dir, teacher, tmp_path / f"bf16-{bf16}", steps=4, group_p=None, bf16=bf16, optim="sgd",
            learning_rate=0.05, callbacks=[WatchAutocast()] if bf16 else [],
        )
        runs[bf16] = (weights(student), [entry["loss"] for entry in trainer.state.log_history if "loss" in entry])
    assert autocast_seen and all(autocast_seen)  # the student's forward really ran under bf16 autocast
    (fp32_weights, fp32_losses), (bf16_weights, bf16_losses) = runs[False], runs[True]
    assert len(fp32_losses) == len(bf16_losses) == 4
    assert bf16_losses == pytest.approx(fp32_losses, rel=BF16_LOSS_RTOL)
    update_diff = sum(((bf16_weights[k] - fp32_weights[k]) ** 2).sum() for k in start) ** 0.5
    update = sum(((fp32_weights[k] - start[k]) ** 2).sum() for k in start) ** 0.5
    assert update > 0 and update_diff / update <= BF16_UPDATE_RTOL
