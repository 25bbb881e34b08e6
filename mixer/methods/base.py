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


class MixtureTrajectories:
    """Contexts -> trajectories for learners built on a :class:`MixtureOfExperts`.

    Mixed into the mixture learners and the context baselines (CoDA, NCF). Expects
    ``self.model`` (the mixture), ``self.ctx`` (training contexts), ``self.solver``,
    ``self.nfe``, ``self.tf_alpha`` and ``self._train`` (the training batch, set by ``fit``).
    Every path goes through ``MixtureOfExperts.trajectories``, so an ODE bank is rolled out
    and a PL-RNN is unrolled (teacher-forced with α < 1) without the learner knowing which.
    """

    @property
    def discrete_time(self) -> bool:
        return self.model.experts.discrete_time

    def trajectories(self, contexts, batch: EnvBatch, alpha: float = 1.0) -> torch.Tensor:
        """Training trajectories (counted in ``nfe``); α < 1 teacher-forces a PL-RNN."""
        pred = self.model.trajectories(
            contexts, batch.x0, batch.t, data=batch.X, alpha=alpha, **self.solver
        )
        self.nfe += self.model.last_nfe
        return pred

    def predict(self, batch: EnvBatch, contexts=None) -> torch.Tensor:
        """Trajectories from each first state; a PL-RNN runs free (no teacher forcing)."""
        contexts = self.ctx if contexts is None else contexts
        with torch.no_grad():
            return self.model.trajectories(contexts, batch.x0, batch.t, **self.solver)

    def support_trajectories(self, support: EnvBatch):
        """``contexts -> trajectories`` of the support rows, for contexts-only adaptation.

        A PL-RNN adapts on the loss it was trained on: teacher forcing at the final α.
        """
        alpha = self.final_tf_alpha()

        def trajectories_of(contexts):
            return self.model.trajectories(
                contexts, support.x0, support.t, data=support.X, alpha=alpha, **self.solver
            )

        return trajectories_of

    def _scores(self, contexts, batch: EnvBatch, alpha: float) -> dict:
        with torch.no_grad():
            scores = {}
            for key, a in (("loss_tf", alpha), ("mse_free", 1.0)):
                pred = self.model.trajectories(
                    contexts, batch.x0, batch.t, data=batch.X, alpha=a, **self.solver
                )
                scores[key] = float((pred - batch.X).square().mean())
        return scores

    def sequence_log(self) -> dict:
        """train_log columns of a PL-RNN: α now, teacher-forced and free-running MSE."""
        if not self.discrete_time or self._train is None:
            return {}
        return {"tf_alpha": self.tf_alpha, **self._scores(self.ctx, self._train, self.tf_alpha)}

    def sequence_losses(self, batch: EnvBatch, contexts=None) -> dict:
        if not self.discrete_time:
            return {}
        contexts = self.ctx if contexts is None else contexts
        return self._scores(contexts, batch, self.final_tf_alpha())
