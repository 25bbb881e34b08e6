"""The one interface every learner implements; its declarations feed the config validator."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from mixer.training.adaptation import per_env_mse
from mixer.training.batches import EnvBatch


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


def run_on(history: EnvBatch, future: EnvBatch, keep_history: int | None = None) -> EnvBatch:
    """One batch of ``history``'s last ``keep_history`` samples (None: all) followed by
    ``future``'s times, the future values replaced by NaN (nothing may read them)."""
    past = history.X[:, :, -keep_history:] if keep_history else history.X
    times = history.t[:, -past.shape[2] :]
    X = torch.cat([past, torch.full_like(future.X, float("nan"))], dim=2)
    return EnvBatch(X, torch.cat([times, future.t], dim=1), future.env_id, future.family)


class Learner(ABC):
    """Contract of a learner (MixER, its variants, the baselines, a user's own).

    A learner is one class. It declares its hyper-parameters in ``hyperparameters`` (key ->
    JSON-schema fragment with ``description``, ``type``/``enum`` and ``default``); the config
    validator builds the schema of a method entry from them (inherited keys included) and
    rejects any key the learner does not declare. ``training``, ``adaptation`` and ``solver``
    blocks are common to every learner and arrive merged in ``cfg``.

    Class attributes besides ``hyperparameters``:

    - ``backbones``: the expert architectures the learner accepts through a ``backbone`` key
      (``"all"``: every registered backbone; ``None``: a fixed architecture, no such key),
      ``default_backbone`` the default; the chosen backbone's own keys (e.g. the PL-RNN's
      ``latent_dim``) are then accepted too.
    - ``architecture``: what metrics.json reports as the backbone of a fixed architecture.
    - ``fixed_n_experts``: a mixture that always uses this many experts.
    - ``trains``: False for a reference predictor (``mean``, ``persistence``, ``ar``) whose
      ``fit`` only computes statistics and logs no outer step.

    The constructor receives the cell's resolved config, the state dimension, the number of
    training environments, the device and the seed; all randomness comes from
    ``self.generator``. The training loops (:mod:`mixer.training.loops`) call the hooks below; the
    abstract ones must be written, the others have a documented default.
    """

    hyperparameters: ClassVar[dict[str, dict]] = {}
    backbones: ClassVar[tuple[str, ...] | str | None] = None
    default_backbone: ClassVar[str | None] = None
    architecture: ClassVar[str | None] = None
    fixed_n_experts: ClassVar[int | None] = None
    trains: ClassVar[bool] = True
    # The validation split while training scores it (training's val_every > 0), else None.
    validation: EnvBatch | None = None

    def __init__(self, cfg: dict, state_dim: int, n_envs: int, device: torch.device, seed: int):
        self.cfg = cfg
        self.state_dim = state_dim
        self.n_envs = n_envs
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.tf_alpha = teacher_forcing_alpha(cfg, 0, 2)

    @classmethod
    def declared_hyperparameters(cls) -> dict[str, dict]:
        """Every key the class declares, its bases' first (a subclass may redefine one)."""
        keys: dict[str, dict] = {}
        for klass in reversed(cls.__mro__):
            keys.update(vars(klass).get("hyperparameters", {}))
        return keys

    @classmethod
    def architecture_of(cls, cfg: dict) -> str | None:
        """What metrics.json reports as the backbone: a fixed architecture or `backbone`."""
        return cls.architecture or cfg.get("backbone")

    # --- training: what the loops call ---

    @abstractmethod
    def fit(self, train: EnvBatch, checkpoint=None):
        """Train on the training environments; return a :class:`mixer.training.loops.TrainLog`.

        Usually one line: ``train_alternating`` (proximal alternating minimisation) or
        ``train_joint`` (one optimiser over everything) with ``self.cfg["training"]``.
        """

    @abstractmethod
    def context_parameters(self) -> list[Tensor]:
        """The per-environment context parameters (may be empty)."""

    @abstractmethod
    def model_parameters(self) -> list[Tensor]:
        """The shared model parameters the model optimiser steps."""

    @abstractmethod
    def loss(self, batch: EnvBatch, envs: Tensor | None = None) -> Tensor:
        """Training loss on environments ``envs`` of ``batch`` (all when None), a scalar."""

    def start_outer_step(self, outer: int, n_outer: int) -> None:
        """Before every outer step (0-based ``outer`` of ``n_outer``). Default: set the
        teacher-forcing strength ``tf_alpha`` of the schedule (ODE rollouts ignore it)."""
        self.tf_alpha = teacher_forcing_alpha(self.cfg, outer, n_outer)

    def after_inner_step(self, batch: EnvBatch, inner_step: int) -> None:  # noqa: B027
        """After every inner step (1-based count). Default: nothing (MixER refits its gate)."""

    def active_experts(self) -> Tensor | None:
        """[K] bool mask of the experts the last loss routed to, so that the optimiser leaves
        the others untouched; None (default) steps every parameter."""
        return None

    def attach_optimizers(self, opt_ctx, opt_model) -> None:  # noqa: B027
        """Called once the loop's optimisers exist (and after a resume). Default: nothing."""

    def validation_mse(self) -> float:
        """Mean over environments of the MSE of ``self.validation`` (the validation split, set
        by the training stage when the training block's ``val_every`` > 0) predicted with the
        training contexts. A learner whose contexts are computed at the end of ``fit``
        (CAVIA) computes them here first."""
        batch = self.validation
        return float(per_env_mse(self.predict(batch), batch.X).mean())

    def log_extras(self) -> dict:
        """Extra train_log.csv columns of this outer step. Default: none."""
        return {}

    # --- evaluation ---

    @abstractmethod
    def predict(self, batch: EnvBatch, contexts: Tensor | None = None) -> Tensor:
        """Trajectories [E, N, T, d] from each trajectory's first state, with ``contexts``
        [E, d_ξ] (the training contexts when None); no gradient."""

    def forecast(self, history: EnvBatch, future: EnvBatch, contexts: Tensor | None = None):
        """Predictions [E, N, T_f, d] of ``future``'s times, run on from the end of
        ``history`` (the same environments and trajectories, at earlier times): how a series'
        query part is scored (docs/METHOD.md §5). Default: ``predict`` from the last sample
        of ``history`` over its time and ``future``'s times, that first point dropped. The
        future values are never shown: they are NaN in the batch ``predict`` receives.
        """
        return self.predict(run_on(history, future, keep_history=1), contexts)[:, :, 1:]

    @abstractmethod
    def adapt(self, support: EnvBatch) -> Tensor:
        """Contexts [E_new, d_ξ] of new environments fitted on their support trajectories,
        the model frozen (docs/METHOD.md §5)."""

    @abstractmethod
    def contexts(self) -> Tensor:
        """The training contexts [E, d_ξ] (d_ξ = 0 for a learner without contexts)."""

    def routing(self, contexts: Tensor | None = None) -> Tensor | None:
        """The expert of each environment [E]; None (default) for a learner without a gate."""
        return None

    def gate_probabilities(self, contexts: Tensor | None = None) -> Tensor | None:
        """Gate probabilities [E, K]; None (default) for a learner without a gate."""
        return None

    def sequence_losses(self, batch: EnvBatch, contexts: Tensor | None = None) -> dict:
        """Discrete-time backbones: ``{"loss_tf", "mse_free"}`` (teacher-forced at the final
        α, free running); ``{}`` (default) otherwise."""
        return {}

    def final_tf_alpha(self) -> float:
        """α at the end of training: used by adaptation and the teacher-forced score."""
        return teacher_forcing_alpha(self.cfg, 1, 2)

    def counters(self) -> dict:
        """Run counters for the metrics file (refits, function evaluations, ...). Default: none."""
        return {}

    # --- persistence ---

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything ``load_state_dict`` needs to restore the trained learner."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...
