"""Relative MSE per dimension (docs/METHOD.md §5), checked against numbers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mixer.stages.metrics import mean_and_median, per_env_relative_mse


def envs(*per_env):
    """[E, N=1, T, d] from one [T, d] list per environment."""
    return np.array(per_env, dtype=float)[:, None]


def test_each_dimension_counts_alike_whatever_its_scale():
    # Two time points, dimension 0 of scale 1, dimension 1 of scale 100.
    true = envs([[0, 0], [2, 200]], [[4, 100], [6, 300]])
    pred = envs([[0, 0], [3, 210]], [[4, 100], [6, 400]])
    # Environment 0: dim 0 MSE (0 + 1)/2 = 0.5, Var 1; dim 1 MSE (0 + 100)/2 = 50, Var 10000:
    #   (0.5/1 + 50/10000)/2 = (0.5 + 0.005)/2 = 0.2525.
    # Environment 1: dim 0 MSE 0, Var 1; dim 1 MSE (0 + 10000)/2 = 5000, Var 10000:
    #   (0 + 0.5)/2 = 0.25.
    # (The pooled formula, MSE over all values / their variance, gave 25.25/7450.75 = 0.00339
    # and 2500/14506.75 = 0.172: the large dimension hid the error of the small one.)
    assert per_env_relative_mse(pred, true) == pytest.approx([0.2525, 0.25])


def test_a_dimension_constant_in_one_environment_is_floored_by_the_split():
    # Dimension 0 is constant (5) in environment 0 and spans 0..10 in environment 1.
    true = envs([[5, 0], [5, 2]], [[0, 0], [10, 2]])
    pred = envs([[5, 0], [5.1, 2]], [[0, 0], [10, 2]])
    # Dim 0 pooled over the split: values 5, 5, 0, 10 -> mean 5, Var (0 + 0 + 25 + 25)/4 = 12.5,
    # so the floor is 1e-3 × 12.5 = 0.0125. Environment 0: dim 0 MSE 0.1²/2 = 0.005,
    # 0.005/0.0125 = 0.4 (not 0.005/1e-12); dim 1 exact: 0. Mean (0.4 + 0)/2 = 0.2.
    # Environment 1 is predicted exactly: 0.
    assert per_env_relative_mse(pred, true) == pytest.approx([0.2, 0.0])
    # Without the floor the first environment's score would be astronomically large.
    assert per_env_relative_mse(pred, true, rel_floor=0.0)[0] > 1e8


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="equal shapes"):
        per_env_relative_mse(np.zeros((2, 1, 3, 2)), np.zeros((2, 1, 3, 3)))


def test_mean_and_median_over_environments():
    assert mean_and_median("rel_mse_ood", np.array([1.0, 2.0, 9.0])) == {
        "rel_mse_ood": 4.0,
        "rel_mse_ood_median": 2.0,
    }
