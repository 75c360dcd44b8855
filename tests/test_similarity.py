"""The tensor math, checked against naive loop-based re-implementations of method.md."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from distillcse_st.similarity import (
    cosine_similarity_matrix,
    distillation_divergence,
    fixed_size_groups,
    group_shuffled_pairing,
    in_batch_distillation_loss,
    off_diagonal,
    probability_groups,
    shuffle_within_groups,
    simcse_contrastive_loss,
    similarity_from_stacked,
    stack_teacher_embeddings,
    weighted_similarity,
)


def naive_row_divergence(t: list[float], s: list[float], tau_t: float, tau_s: float, kind: str) -> float:
    """One row's divergence, written out with Python sums."""
    zt = [math.exp(x / tau_t) for x in t]
    zs = [math.exp(x / tau_s) for x in s]
    q = [z / sum(zt) for z in zt]
    p = [z / sum(zs) for z in zs]
    if kind == "ce":
        return -sum(qj * math.log(pj) for qj, pj in zip(q, p))
    if kind == "kl":
        return sum(qj * math.log(qj / pj) for qj, pj in zip(q, p) if qj > 0)
    m = [(qj + pj) / 2 for qj, pj in zip(q, p)]
    kl_qm = sum(qj * math.log(qj / mj) for qj, mj in zip(q, m) if qj > 0)
    kl_pm = sum(pj * math.log(pj / mj) for pj, mj in zip(p, m) if pj > 0)
    return (kl_qm + kl_pm) / 2


def naive_distillation(student: torch.Tensor, teacher_sim: torch.Tensor, kind: str, permutation=None,
                       tau_t: float = 0.0125, tau_s: float = 0.025) -> float:
    """method.md's L_kd with loops: diagonal excluded; with a pairing, rank r meets student column perm[r]."""
    size = len(student)
    s = cosine_similarity_matrix(student, student).double().tolist()
    t = teacher_sim.double().tolist()
    total = 0.0
    for i in range(size):
        candidates = [j for j in range(size) if j != i]
        t_row = [t[i][j] for j in candidates]
        s_row = [s[i][j] for j in candidates]
        if permutation is not None:
            ranked = sorted(range(size - 1), key=lambda r: -t_row[r])
            t_row = [t_row[r] for r in ranked]
            s_row = [s_row[c] for c in permutation[i]]
        total += naive_row_divergence(t_row, s_row, tau_t, tau_s, kind)
    return total / size


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(9, 16, generator=generator, dtype=torch.float64)
    teacher = torch.randn(9, 8, generator=generator, dtype=torch.float64)
    return student, cosine_similarity_matrix(teacher, teacher)


@pytest.mark.parametrize("kind", ["ce", "kl", "js"])
def test_distillation_matches_naive_loops(batch, kind):
    student, teacher_sim = batch
    ours = in_batch_distillation_loss(student, teacher_sim, divergence=kind)
    assert ours.item() == pytest.approx(naive_distillation(student, teacher_sim, kind), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("kind", ["ce", "kl", "js"])
def test_group_p_distillation_matches_naive_loops_with_the_same_permutation(batch, kind):
    student, teacher_sim = batch
    torch.manual_seed(3)
    _, permutation = group_shuffled_pairing(off_diagonal(teacher_sim.float()), group_p=0.3)
    torch.manual_seed(3)
    ours = in_batch_distillation_loss(student, teacher_sim, divergence=kind, group_p=0.3)
    expected = naive_distillation(student, teacher_sim, kind, permutation.tolist())
    assert ours.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_kl_is_ce_minus_teacher_entropy(batch):
    student, teacher_sim = batch
    q = torch.softmax(off_diagonal(teacher_sim) / 0.0125, dim=-1)
    entropy = -(q * q.clamp_min(1e-30).log()).sum(-1).mean()
    ce = in_batch_distillation_loss(student, teacher_sim, divergence="ce")
    kl = in_batch_distillation_loss(student, teacher_sim, divergence="kl")
    assert kl.item() == pytest.approx((ce - entropy).item(), abs=1e-4)


def test_unknown_divergence_is_refused():
    with pytest.raises(ValueError, match="divergence"):
        distillation_divergence(torch.zeros(2, 3), torch.zeros(2, 3), divergence="mse")


def test_off_diagonal_drops_exactly_the_diagonal():
    matrix = torch.arange(16.0).view(4, 4)
    expected = torch.tensor([[1, 2, 3], [4, 6, 7], [8, 9, 11], [12, 13, 14]], dtype=torch.float32)
    assert torch.equal(off_diagonal(matrix), expected)


def test_simcse_loss_matches_cross_entropy_definition():
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    logits = F.cosine_similarity(a[:, None], b[None], dim=-1) / 0.05
    expected = F.cross_entropy(logits, torch.arange(6))
    assert simcse_contrastive_loss(a, b, 0.05).item() == pytest.approx(expected.item(), rel=1e-5)


def test_stacked_teacher_embeddings_give_the_weighted_similarity():
    generator = torch.Generator().manual_seed(2)
    embeddings = [torch.randn(7, 4, generator=generator), torch.randn(7, 9, generator=generator)]
    weights = [0.7, 0.3]
    stacked = stack_teacher_embeddings(embeddings, weights)
    assert stacked.shape == (7, 13)
    assert torch.allclose(similarity_from_stacked(stacked), weighted_similarity(embeddings, weights), atol=1e-6)


def test_probability_groups_follow_cumulative_mass():
    # softmax of log-probabilities at temperature 1 gives back the probabilities
    probabilities = torch.tensor([[0.35, 0.25, 0.15, 0.1, 0.1, 0.05]])
    groups = probability_groups(probabilities.log(), group_p=0.3)
    # cumulative 0.35 0.60 0.75 0.85 0.95 1.00 -> floor(c / 0.3) = 1 2 2 2 3 3 (last group is 3)
    assert groups.tolist() == [[1, 2, 2, 2, 3, 3]]


def test_probability_groups_edge_cases():
    logits = torch.randn(5, 20).sort(dim=-1, descending=True).values
    assert (probability_groups(logits, group_p=1.0) == 0).all()  # p >= 1: one group
    tiny = probability_groups(logits, group_p=1e-9)
    assert (tiny.diff(dim=-1) > 0).all()  # tiny p: every position is its own group


def naive_groups(sorted_logits: torch.Tensor, group_p: float) -> list[list[int]]:
    """The authors' boundaries: group g ends where the cumulative mass reaches (g + 1) * p."""
    n_groups = math.ceil(1 / group_p - 1e-9)
    out = []
    for row in torch.softmax(sorted_logits.double(), -1).cumsum(-1).tolist():
        ends = [sum(c < (g + 1) * group_p for c in row) for g in range(n_groups)]
        ends[-1] = len(row)
        out.append([next(g for g in range(n_groups) if r < ends[g]) for r in range(len(row))])
    return out


def test_probability_groups_match_the_reference_boundaries():
    logits = (torch.randn(16, 31, generator=torch.Generator().manual_seed(4)) * 3).sort(-1, descending=True).values
    for p in (0.1, 0.25, 0.5):
        assert probability_groups(logits, group_p=p).tolist() == naive_groups(logits, p)


def test_shuffle_is_a_permutation_that_keeps_every_position_in_its_group():
    logits = torch.randn(64, 63).sort(dim=-1, descending=True).values * 4
    groups = probability_groups(logits, group_p=0.1)
    for _ in range(20):
        positions = shuffle_within_groups(groups)
        assert torch.equal(positions.sort(dim=-1).values, torch.arange(63).expand(64, 63))
        assert torch.equal(groups.gather(-1, positions), groups)


def test_fixed_size_groups_with_remainder():
    assert fixed_size_groups(2, 7, 3).tolist() == [[0, 0, 0, 1, 1, 1, 2]] * 2


def test_within_group_order_is_uniform():
    """Chi-square over all 4! orders of a 4-member group: every order as likely as the others."""
    groups = torch.tensor([[0, 0, 1, 1, 1, 1, 2]]).expand(12_000, 7)
    positions = shuffle_within_groups(groups, generator=torch.Generator().manual_seed(5))
    middle = positions[:, 2:6] - 2
    codes = (middle * torch.tensor([64, 16, 4, 1])).sum(-1)
    counts = torch.bincount(codes, minlength=256)
    observed = counts[counts > 0]
    assert len(observed) == 24
    assert chisquare(observed.numpy()).pvalue > 1e-3
    assert (positions[:, :2].sort(-1).values == torch.tensor([0, 1])).all()
    assert (positions[:, 6] == 6).all()


def test_rows_are_shuffled_independently():
    groups = torch.zeros(2000, 5, dtype=torch.long)
    positions = shuffle_within_groups(groups, generator=torch.Generator().manual_seed(6))
    same_as_next_row = (positions[:-1] == positions[1:]).all(-1).float().mean().item()
    assert same_as_next_row < 0.05  # 1 / 5! = 0.008 expected for independent rows


def test_group_shuffled_pairing_is_seeded_by_torch_and_ranks_the_teacher():
    logits = torch.randn(8, 7)
    torch.manual_seed(11)
    sorted_a, index_a = group_shuffled_pairing(logits, group_p=0.5)
    torch.manual_seed(11)
    sorted_b, index_b = group_shuffled_pairing(logits, group_p=0.5)
    assert torch.equal(index_a, index_b)
    assert torch.equal(sorted_a, logits.sort(-1, descending=True).values)
    with pytest.raises(ValueError, match="exactly one"):
        group_shuffled_pairing(logits)


def test_tiny_p_is_vanilla_distillation(batch):
    student, teacher_sim = batch
    vanilla = in_batch_distillation_loss(student, teacher_sim)
    tiny = in_batch_distillation_loss(student, teacher_sim, group_p=1e-9)
    assert tiny.item() == pytest.approx(vanilla.item(), rel=1e-6)


def test_softmaxes_stay_float32_under_bf16_autocast(batch):
    student, teacher_sim = batch
    student = student.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = in_batch_distillation_loss(student, teacher_sim.float(), group_p=0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(student.grad).all()
