import math

import pytest
import torch

from qhawkeye.train.pao import aggregate_like_trl, gamma_schedule, perception_kl_per_token


def test_kl_zero_for_identical_logps_and_positive_otherwise():
    logp = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    assert torch.equal(perception_kl_per_token(logp, logp), torch.zeros_like(logp))
    deg = logp + torch.tensor([[0.1, -0.3, 0.0]])
    kl = perception_kl_per_token(logp, deg)
    # d = 0.1: e^0.1 - 0.1 - 1 = 0.0051709; d = -0.3: e^-0.3 + 0.3 - 1 = 0.0408182
    assert kl.tolist()[0] == pytest.approx([0.0051709, 0.0408182, 0.0], abs=1e-6)


def test_kl_clamps():
    orig = torch.zeros(1, 2)
    deg = torch.tensor(
        [[50.0, -50.0]]
    )  # d clamped to +-20; exp(20)-21 > 10 -> clamped to 10; exp(-20)+19 -> 10
    assert perception_kl_per_token(orig, deg).tolist() == [[10.0, 10.0]]
    assert perception_kl_per_token(orig, torch.tensor([[-5.0, 2.0]])).tolist()[0] == pytest.approx(
        [math.exp(-5) + 5 - 1, math.exp(2) - 3], abs=1e-5
    )


def test_gamma_schedule():
    assert gamma_schedule(0.0, 1e-4, 5.0) == pytest.approx(1e-4)
    assert gamma_schedule(2.5, 1e-4, 5.0) == pytest.approx(0.5e-4)  # cos(pi/2) = 0
    assert gamma_schedule(1.25, 1.0, 5.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert gamma_schedule(5.0, 1e-4, 5.0) == pytest.approx(0.0, abs=1e-20)
    assert gamma_schedule(12.0, 1e-4, 5.0) == pytest.approx(0.0, abs=1e-20)
    with pytest.raises(ValueError):
        gamma_schedule(1.0, 1.0, 0.0)


X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
M = torch.tensor([[1, 1, 1], [1, 1, 0]])
COMMON = dict(
    num_items_in_batch=torch.tensor(10.0), num_processes=2, steps_per_generation=2, max_completion_length=4
)


@pytest.mark.parametrize(
    "loss_type, ga, expected",
    [
        # per-sequence means 2 and 4.5 -> 3.25, / GA
        ("grpo", 1, 3.25),
        ("grpo", 2, 1.625),
        ("sapo", 2, 1.625),
        # token mean 15/5 = 3, / GA
        ("bnpo", 1, 3.0),
        ("bnpo", 2, 1.5),
        # sum 15 / (B 2 * L 4) = 1.875, / GA
        ("dr_grpo", 2, 0.9375),
        # sum 15 / (10 / 2 processes * GA / steps_per_generation): GA 2 -> 15/5 = 3; GA 4 -> 15/10 = 1.5
        ("dapo", 2, 3.0),
        ("dapo", 4, 1.5),
        ("cispo", 2, 3.0),
        # per-sequence sums 6 and 9 -> 7.5, / GA
        ("luspo", 2, 3.75),
    ],
)
def test_aggregation_matches_trl_rules(loss_type, ga, expected):
    got = aggregate_like_trl(X, M, loss_type, train=True, gradient_accumulation_steps=ga, **COMMON)
    assert got.item() == pytest.approx(expected)


def test_aggregation_eval_has_no_ga_scaling():
    got = aggregate_like_trl(X, M, "grpo", train=False, gradient_accumulation_steps=4, **COMMON)
    assert got.item() == pytest.approx(3.25)
    with pytest.raises(ValueError):
        aggregate_like_trl(X, M, "nope", train=True, gradient_accumulation_steps=1, **COMMON)
