"""Learner.forecast's default (ODE learners on series): run on from the last history sample."""

from __future__ import annotations

import numpy as np
import torch

from mixer.methods.learner import Learner, run_on
from mixer.training.batches import EnvBatch


class Drift(Learner):
    """x(t) = x0 + (t − t0) per dimension; records the batch predict received."""

    def fit(self, train, checkpoint=None): ...
    def context_parameters(self):
        return []

    def model_parameters(self):
        return []

    def loss(self, batch, envs=None): ...
    def adapt(self, support): ...
    def contexts(self):
        return torch.zeros(self.n_envs, 0)

    def state_dict(self):
        return {}

    def load_state_dict(self, state): ...

    def predict(self, batch, contexts=None):
        self.seen = batch
        offset = (batch.t - batch.t[:, :1])[:, None, :, None]
        return batch.x0[:, :, None, :] + offset


def series(values, start):
    X = torch.tensor(values, dtype=torch.float64).view(1, 1, -1, 1)
    t = torch.arange(start, start + X.shape[2], dtype=torch.float64).view(1, -1)
    return EnvBatch(X, t, np.array([0]), np.array([0]))


def test_the_default_forecast_starts_from_the_last_history_sample():
    history, future = series([1.0, 2.0, 5.0], 0), series([9.0, 9.0], 3)
    learner = Drift({}, 1, 1, torch.device("cpu"), 0)
    forecast = learner.forecast(history, future)
    # From x = 5 at t = 2: 6 at t = 3, 7 at t = 4 (not from the first query value 9).
    assert forecast.flatten().tolist() == [6.0, 7.0]
    # predict saw the last history sample and the future times, the future values as NaN.
    assert learner.seen.t.flatten().tolist() == [2.0, 3.0, 4.0]
    assert learner.seen.X[0, 0, 0, 0] == 5.0 and learner.seen.X[:, :, 1:].isnan().all()


def test_run_on_keeps_the_whole_history_by_default():
    joined = run_on(series([1.0, 2.0], 0), series([3.0], 2))
    assert joined.t.flatten().tolist() == [0.0, 1.0, 2.0]
    assert joined.X.flatten()[:2].tolist() == [1.0, 2.0] and joined.X.flatten()[2].isnan()
