"""The reference predictors (mean, persistence, ar) against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixer.methods.catalog import learner_class
from mixer.training.batches import EnvBatch


def batch(values, start=0) -> EnvBatch:
    """One environment, one trajectory of the 1-d ``values`` on t = start, start + 1, ..."""
    X = torch.tensor(values, dtype=torch.float64).view(1, 1, -1, 1)
    t = torch.arange(start, start + X.shape[2], dtype=torch.float64).view(1, -1)
    return EnvBatch(X, t, np.array([0]), np.array([0]))


def learner(name, **cfg):
    return learner_class(name)(cfg, 1, 1, torch.device("cpu"), seed=0)


def test_mean_holds_the_seen_mean():
    history, future = batch([1.0, 2.0, 3.0, 4.0]), batch([5.0, 6.0], start=4)
    mean = learner("mean")
    log = mean.fit(history)
    assert log.rows == [] and not type(mean).trains  # nothing trained
    assert mean.forecast(history, future).flatten().tolist() == [2.5, 2.5]
    # After adaptation, the support part's mean: (10 + 20) / 2.
    adapted = mean.adapt(batch([10.0, 20.0]))
    assert adapted.flatten().tolist() == [15.0]
    assert mean.predict(future, adapted).flatten().tolist() == [15.0, 15.0]


def test_persistence_carries_the_last_seen_value():
    history, future = batch([1.0, 2.0, 3.0, 4.0]), batch([5.0, 6.0], start=4)
    persistence = learner("persistence")
    persistence.fit(history)
    assert persistence.forecast(history, future).flatten().tolist() == [4.0, 4.0]
    # An ODE trajectory: its initial condition held.
    assert persistence.predict(batch([7.0, 8.0, 9.0])).flatten().tolist() == [7.0, 7.0, 7.0]
    assert persistence.contexts().shape == (1, 0)


def test_ar_of_one_lag_by_hand():
    # About its mean (0), x_t = a x_{t-1}: a = Σ x_t x_{t-1} / (Σ x_{t-1}² + λ·n) = −5 / (5 +
    # 5λ), so with λ = 1e-9 the forecast goes on alternating: 1, −1.
    history, future = batch([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]), batch([0.0, 0.0], start=6)
    ar = learner("ar", lags=1, ridge=1e-9)
    ar.fit(history)
    a = -1 / (1 + 1e-9)
    # The last value is −1: x_6 = a·(−1), x_7 = a·x_6.
    assert ar.forecast(history, future).flatten().tolist() == pytest.approx([-a, -a * a], abs=1e-12)
    assert ar.contexts()[0, 1].item() == pytest.approx(a, abs=1e-12)  # [mean, A(1 lag), A1]


def test_ar_chooses_its_lags_on_validation_data():
    # A sinusoid is exactly AR(2): x_t = 2 cos(ω) x_{t-1} − x_{t-2}. Chosen on the last third
    # of the training series, two lags or more win, and the forecast of unseen time is close;
    # one lag cannot follow it.
    omega = 2 * math.pi / 12
    values = [math.sin(omega * t) for t in range(48)]
    history, future = batch(values[:36]), batch(values[36:], start=36)
    ar = learner("ar", lags=None, ridge=None)
    ar.fit(history)
    assert ar.lags >= 2
    error = (ar.forecast(history, future) - future.X).abs().max().item()
    assert error < 0.05
    one = learner("ar", lags=1, ridge=1e-3)
    one.fit(history)
    assert (one.forecast(history, future) - future.X).abs().max().item() > 0.3
