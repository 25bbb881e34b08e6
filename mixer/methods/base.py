"""The one interface every learner implements, and the registry that names them."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from mixer.batch import EnvBatch
from mixer.errors import ConfigError

METHODS: dict[str, type[Learner]] = {}


def register_method(*names: str):
    """Class decorator: make a learner available under each of ``names`` in the config."""

    def decorate(cls):
        for name in names:
            METHODS[name] = cls
        return cls

    return decorate


def method_class(name: str) -> type[Learner]:
    import mixer.methods  # noqa: F401  (importing the package registers every learner)

    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'. Valid methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def teacher_forcing_alpha(cfg: dict, outer: int, n_outer: int) -> float:
    """α of generalised teacher forcing at outer step ``outer`` (0-based) of ``n_outer``.

    ``tf_alpha`` at the first step, moving linearly to ``tf_alpha_end`` at the last one
    (constant when ``tf_alpha_end`` is null). α = 1 is free running, α = 0 full forcing.
    """
    start, end = cfg.get("tf_alpha", 1.0), cfg.get("tf_alpha_end")
    if end is None:
        return float(start)
    fraction = min(outer / (n_outer - 1), 1.0) if n_outer > 1 else 1.0
    return float(start + (end - start) * fraction)


def sequence_scores(model, contexts, batch: EnvBatch, alpha: float, solver: dict) -> dict:
    """Teacher-forced MSE at ``alpha`` and free-running MSE of a mixture on ``batch``."""
    with torch.no_grad():
        scores = {}
        for key, a in (("loss_tf", alpha), ("mse_free", 1.0)):
            pred = model.trajectories(contexts, batch.x0, batch.t, data=batch.X, alpha=a, **solver)
            scores[key] = float((pred - batch.X).square().mean())
    return scores


class Learner(ABC):
    """Contract of a learner (MixER, its variants and the baselines).

    A learner owns its model, one context vector per training environment, and a
    ``torch.Generator`` (``self.generator``) from which all of its randomness is drawn.

    - ``fit(train, checkpoint)`` trains on an :class:`EnvBatch` of training environments and
      returns a :class:`mixer.training.TrainLog`.
    - ``predict(batch, contexts)`` rolls out trajectories [E, N, T, d] from each trajectory's
      first state, using ``contexts`` [E, d_ξ] (the training contexts when None).
    - ``adapt(support)`` fits contexts of new environments on their support trajectories with
      the model frozen and returns them [E_new, d_ξ].
    - ``contexts()`` returns the training contexts [E, d_ξ]; ``routing(contexts)`` the expert
      of each environment [E] (None for learners without a mixture).
    - ``start_outer_step(outer, n_outer)`` is called by the training loops before every outer
      step; here it sets the teacher-forcing strength ``tf_alpha`` of the schedule
      (only discrete-time backbones use it; ODE rollouts ignore it).
    - ``sequence_losses(batch, contexts)``: for discrete-time backbones the teacher-forced loss
      (final α) and the free-running MSE, ``{"loss_tf", "mse_free"}``; ``{}`` otherwise.
    """

    name: str = ""

    def __init__(self, cfg: dict, state_dim: int, n_envs: int, device: torch.device, seed: int):
        self.cfg = cfg
        self.state_dim = state_dim
        self.n_envs = n_envs
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.tf_alpha = teacher_forcing_alpha(cfg, 0, 2)

    @classmethod
    def architecture_of(cls, cfg: dict) -> str | None:
        """What metrics.json reports as the backbone: a fixed architecture or `backbone`."""
        return getattr(cls, "architecture", None) or cfg.get("backbone")

    def start_outer_step(self, outer: int, n_outer: int) -> None:
        self.tf_alpha = teacher_forcing_alpha(self.cfg, outer, n_outer)

    def final_tf_alpha(self) -> float:
        """α at the end of training: used by adaptation and the teacher-forced score."""
        return teacher_forcing_alpha(self.cfg, 1, 2)

    def sequence_losses(self, batch: EnvBatch, contexts: torch.Tensor | None = None) -> dict:
        return {}

    @abstractmethod
    def fit(self, train: EnvBatch, checkpoint=None): ...

    @abstractmethod
    def predict(self, batch: EnvBatch, contexts: torch.Tensor | None = None) -> torch.Tensor: ...

    @abstractmethod
    def adapt(self, support: EnvBatch) -> torch.Tensor: ...

    @abstractmethod
    def contexts(self) -> torch.Tensor: ...

    def routing(self, contexts: torch.Tensor | None = None) -> torch.Tensor | None:
        return None

    @abstractmethod
    def state_dict(self) -> dict: ...

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    def counters(self) -> dict:
        """Run counters for the metrics file (refits, function evaluations, ...)."""
        return {}
