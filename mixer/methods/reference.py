"""Reference predictors: rows that need no training, scored by the same code on the same splits,
so that every table says what doing (almost) nothing would score (issue 22).

- ``mean``: each state dimension's mean over the environment's training trajectories (for a
  series: its training part), or over its support part after adaptation, held constant;
- ``persistence``: the last observed value carried forward: for ODE trajectories the initial
  condition, for a series the last sample of its training or support part (a series' forecast
  runs on from there: :meth:`mixer.methods.learner.Learner.forecast`);
- ``ar``: a linear autoregressive model of ``lags`` lags per environment, ridge regression on
  the environment's own training (or support) part about its mean; meant for series, whose
  forecast runs on from the last ``lags`` samples seen. A trajectory predicted from its
  initial condition alone (ODE data) has one sample to start from: it runs the one-lag model
  fitted beside it (a linear map of the state, x' = μ + A (x − μ)). ``lags`` and ``ridge``
  are chosen on validation data when null: each training series is cut at 2/3, the models
  of the grid fitted on the first part forecast the rest, the lowest mean error wins.

Environments are a batch dimension: the statistics and the ridge solves of every environment
are one batched tensor operation.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from mixer.methods.catalog import register_method
from mixer.methods.learner import Learner
from mixer.training.batches import EnvBatch
from mixer.training.bookkeeping import TrainLog

AR_LAGS = (1, 2, 4, 8)
AR_RIDGES = (1e-3, 1e-1, 1e1)
# Fraction of each training series an AR candidate is fitted on when lags/ridge are chosen.
AR_FIT_FRACTION = 2 / 3


class ReferencePredictor(Learner):
    """A predictor with nothing to train: ``fit`` computes statistics of the training part."""

    architecture = "none"
    trains = False

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        self.ctx = torch.zeros(n_envs, self.context_size(), device=device)

    def context_size(self) -> int:
        return self.state_dim

    def statistics(self, batch: EnvBatch) -> Tensor:
        """The per-environment statistics [E, context_size] of ``batch`` (its contexts)."""
        return batch.X.mean(dim=(1, 2))

    def fit(self, train, checkpoint=None):
        self.ctx = self.statistics(train)
        return TrainLog()

    def adapt(self, support):
        return self.statistics(support)

    def contexts(self):
        return self.ctx

    def context_parameters(self):
        return []

    def model_parameters(self):
        return []

    def loss(self, batch, envs=None):
        sub = batch.subset(envs)
        rows = self.ctx if envs is None else self.ctx[envs]
        return (self.predict(sub, rows) - sub.X).square().mean()

    def predict(self, batch, contexts=None):
        contexts = self.ctx if contexts is None else contexts
        return contexts[:, None, None, :].expand_as(batch.X).clone()

    def state_dict(self):
        return {"ctx": self.ctx.clone()}

    def load_state_dict(self, state):
        self.ctx = state["ctx"].to(self.device)

    def counters(self):
        return {"adaptation": "statistics"}


@register_method("mean")
class MeanPredictor(ReferencePredictor):
    """Each dimension's mean over the environment's training (support) part, held constant."""


@register_method("persistence")
class PersistencePredictor(ReferencePredictor):
    """The last observed value carried forward: a trajectory's initial condition (ODE), a
    series' last seen sample (its forecast starts there); no contexts."""

    def context_size(self) -> int:
        return 0

    def statistics(self, batch):
        return batch.X.new_zeros(batch.n_envs, 0)

    def predict(self, batch, contexts=None):
        return batch.x0[:, :, None, :].expand_as(batch.X).clone()


def lagged(X: Tensor, lags: int) -> tuple[Tensor, Tensor]:
    """(design [E, M, lags·d], targets [E, M, d]) of every window of ``lags`` samples and the
    sample after it, over the trajectories of X [E, N, T, d] (newest lag first)."""
    n_times = X.shape[2]
    windows = [X[:, :, lags - k - 1 : n_times - k - 1] for k in range(lags)]
    design = torch.cat(windows, dim=-1)  # [E, N, T - lags, lags·d]
    targets = X[:, :, lags:]
    return design.flatten(1, 2), targets.flatten(1, 2)


def fit_ar(X: Tensor, lags: int, ridge: float) -> Tensor:
    """Per environment, the mean and the ridge AR coefficients about it, flattened:
    [E, d + lags·d·d] (mean first, then A [lags·d, d] row-major)."""
    mean = X.mean(dim=(1, 2))
    design, targets = lagged(X - mean[:, None, None, :], lags)
    gram = design.transpose(1, 2) @ design
    # The ridge weight is per sample, so that it means the same for short and long series.
    eye = torch.eye(gram.shape[-1], dtype=X.dtype, device=X.device)
    penalty = ridge * design.shape[1] * eye
    coef = torch.linalg.solve(gram + penalty, design.transpose(1, 2) @ targets)
    return torch.cat([mean, coef.flatten(1)], dim=1)


def run_ar(params: Tensor, lags: int, history: Tensor, n_steps: int) -> Tensor:
    """``n_steps`` samples after ``history`` [E, N, ≥lags, d], iterating the AR of ``params``."""
    d = history.shape[-1]
    mean, coef = params[:, :d], params[:, d:].view(params.shape[0], lags * d, d)
    window = [history[:, :, -1 - k] - mean[:, None] for k in range(lags)]  # newest first
    out = []
    for _ in range(n_steps):  # a recursion over time, batched over environments
        nxt = torch.cat(window, dim=-1) @ coef
        out.append(nxt + mean[:, None])
        window = [nxt, *window[:-1]]
    return torch.stack(out, dim=2)


@register_method("ar")
class AutoregressivePredictor(ReferencePredictor):
    """A ridge AR model per environment on its own training (support) part, about its mean."""

    hyperparameters = {
        "lags": {
            "description": (
                "Lags p of the autoregressive model; null: chosen on validation data from "
                f"{list(AR_LAGS)} (each training series fitted on its first 2/3, scored on "
                "forecasting the rest)."
            ),
            "type": ["integer", "null"],
            "minimum": 1,
            "default": None,
        },
        "ridge": {
            "description": (
                "Ridge weight per sample on the AR coefficients; null: chosen with `lags` "
                f"from {list(AR_RIDGES)}."
            ),
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "default": None,
        },
    }

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        self.lags = cfg.get("lags") or 1
        self.ridge = cfg.get("ridge") or AR_RIDGES[0]
        super().__init__(cfg, state_dim, n_envs, device, seed)

    def context_size(self) -> int:
        """The mean, the AR(lags) coefficients and the one-lag coefficients."""
        return self.state_dim + (self.lags + 1) * self.state_dim**2

    def fit(self, train, checkpoint=None):
        self.lags, self.ridge = self.choose(train)
        self.ctx = self.statistics(train)
        return TrainLog()

    def choose(self, train: EnvBatch) -> tuple[int, float]:
        """(lags, ridge): the config's, or those of the grid whose models, fitted on the first
        2/3 of every training series, forecast the rest best (validation, training data only)."""
        lags_grid = [self.cfg["lags"]] if self.cfg.get("lags") else AR_LAGS
        ridge_grid = [self.cfg["ridge"]] if self.cfg.get("ridge") else AR_RIDGES
        cut = int(train.X.shape[2] * AR_FIT_FRACTION)
        seen, held = train.X[:, :, :cut], train.X[:, :, cut:]
        scores = {}
        for lags, ridge in itertools.product(lags_grid, ridge_grid):
            if lags >= cut or held.shape[2] == 0:
                continue
            params = fit_ar(seen, lags, ridge)
            forecast = run_ar(params, lags, seen, held.shape[2])
            scores[(lags, ridge)] = float((forecast - held).square().mean())
        finite = {k: v for k, v in scores.items() if v == v}  # NaN-free
        if not finite:
            return min(lags_grid), min(ridge_grid)
        return min(finite, key=finite.get)

    def statistics(self, batch):
        d, n_times = self.state_dim, batch.X.shape[2]
        parts = []
        for lags in (self.lags, 1):
            if n_times <= lags:  # too short to fit: the mean, no dynamics
                zeros = batch.X.new_zeros(batch.n_envs, lags * d * d)
                parts.append(torch.cat([batch.X.mean(dim=(1, 2)), zeros], dim=1))
            else:
                parts.append(fit_ar(batch.X, lags, self.ridge))
        return torch.cat([parts[0], parts[1][:, d:]], dim=1)

    def split(self, contexts: Tensor) -> tuple[Tensor, Tensor]:
        """(AR(lags) parameters, one-lag parameters), each [mean, coefficients]."""
        d = self.state_dim
        mean, rest = contexts[:, :d], contexts[:, d:]
        many, one = rest[:, : self.lags * d * d], rest[:, self.lags * d * d :]
        return torch.cat([mean, many], dim=1), torch.cat([mean, one], dim=1)

    def predict(self, batch, contexts=None):
        """From each trajectory's first sample alone: the one-lag model."""
        one_lag = self.split(self.ctx if contexts is None else contexts)[1]
        rest = run_ar(one_lag, 1, batch.x0[:, :, None], batch.X.shape[2] - 1)
        return torch.cat([batch.x0[:, :, None], rest], dim=2)

    def forecast(self, history, future, contexts=None):
        """From the last ``lags`` samples of the history (its first repeated if shorter)."""
        many = self.split(self.ctx if contexts is None else contexts)[0]
        past = history.X
        if past.shape[2] < self.lags:
            pad = past[:, :, :1].expand(-1, -1, self.lags - past.shape[2], -1)
            past = torch.cat([pad, past], dim=2)
        return run_ar(many, self.lags, past, future.X.shape[2])

    def state_dict(self):
        return {"ctx": self.ctx.clone(), "lags": self.lags, "ridge": self.ridge}

    def load_state_dict(self, state):
        self.lags, self.ridge = int(state["lags"]), float(state["ridge"])
        self.ctx = state["ctx"].to(self.device)
