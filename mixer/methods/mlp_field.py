"""The base of the baselines whose model is one plain MLP vector field (one-for-all, CAVIA)."""

from __future__ import annotations

from torch import Tensor

from mixer.methods.keys import MLP
from mixer.methods.learner import Learner
from mixer.models import VectorField, rollout
from mixer.models.activations import activation_fn
from mixer.models.expert import StackedLayers, mlp_sizes
from mixer.training.batches import EnvBatch


class MLPFieldLearner(Learner):
    """``self.model``: one MLP (a one-expert :class:`StackedLayers`) from ``in_dim`` inputs to
    the state; ``nfe`` counts the field evaluations of training rollouts."""

    hyperparameters = MLP
    ctx_dim = 0

    def __init__(self, cfg, state_dim, n_envs, device, seed, in_dim: int):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        self.solver = dict(cfg["solver"])
        self.nfe = 0
        sizes = mlp_sizes(in_dim, cfg["width"], cfg["depth"], state_dim)
        self.model = StackedLayers(sizes, 1, self.generator).to(device)
        self.act = activation_fn(cfg["activation"])

    def roll(self, field: VectorField, batch: EnvBatch) -> Tensor:
        """A training rollout, counted in ``nfe``."""
        pred = rollout(field, batch.x0, batch.t, **self.solver)
        self.nfe += field.nfe
        return pred

    def model_parameters(self):
        return list(self.model.parameters())

    def counters(self):
        return {"nfe": self.nfe, "context_dim": self.ctx_dim}
