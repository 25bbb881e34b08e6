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
    """

    name: str = ""

    def __init__(self, cfg: dict, state_dim: int, n_envs: int, device: torch.device, seed: int):
        self.cfg = cfg
        self.state_dim = state_dim
        self.n_envs = n_envs
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)

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
