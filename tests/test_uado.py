import math

import pytest
import torch

from qhawkeye.train.uado import group_uncertainty, uado_weights

NAN = float("nan")


@pytest.mark.parametrize(
    "scores, u, w",
    [
        # SPEC's worked values, alpha 0.2, range [1, 5] so var_max = 16 / 4 = 4
        ([1, 1, 5, 5], 1.0, math.exp(-0.2)),  # var = 4 -> u = 1 -> 0.8187
        ([3, 3, 3, 3], 0.0, 1.0),
        ([1, 5, 5, 5], 0.75, math.exp(-0.15)),  # mean 4, var = (9+1+1+1)/4 = 3 -> 0.8607
        ([2.5, 3, 4, 4.5], 0.15625, math.exp(-0.2 * 0.15625)),  # mean 3.5, var 0.625 -> 0.9692
    ],
)
def test_spec_worked_values(scores, u, w):
    got_u = group_uncertainty(torch.tensor([scores], dtype=torch.float32), 1.0, 5.0)
    assert got_u.item() == pytest.approx(u, abs=1e-6)
    assert uado_weights(got_u, 0.2).item() == pytest.approx(w, abs=1e-6)


def test_worked_weights_rounded_as_in_spec():
    u = group_uncertainty(
        torch.tensor([[1, 1, 5, 5], [1, 5, 5, 5], [2.5, 3, 4, 4.5]], dtype=torch.float32), 1, 5
    )
    assert [round(x, 4) for x in uado_weights(u, 0.2).tolist()] == [0.8187, 0.8607, 0.9692]


def test_scores_are_clipped_and_failures_ignored():
    # 0 and 9 clip to 1 and 5 -> same as [1, 5]: var 4 -> u 1; NaN entries are left out of the variance
    u = group_uncertainty(torch.tensor([[0.0, 9.0, NAN, NAN], [2.0, NAN, 4.0, NAN]]), 1, 5)
    assert u.tolist() == pytest.approx([1.0, 0.25])  # second: mean 3, var 1 -> 1/4


def test_policy_for_groups_with_fewer_than_two_scores():
    scores = torch.tensor([[NAN, NAN, NAN, NAN], [3.0, NAN, NAN, NAN]])
    assert group_uncertainty(scores, 1, 5, "max_uncertainty").tolist() == [1.0, 1.0]
    assert group_uncertainty(scores, 1, 5, "full_weight").tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        group_uncertainty(scores, 1, 5, "bogus")
