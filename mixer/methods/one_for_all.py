"""one-for-all (docs/METHOD.md §4): one neural ODE for every environment, no context (the
lower bound)."""

from __future__ import annotations

import torch

from mixer.methods.catalog import register_method
from mixer.methods.mlp_field import MLPFieldLearner
from mixer.models import VectorField, rollout
from mixer.models.shared import shared_mlp_field
from mixer.training.adaptation import per_env_mse
from mixer.training.loops import train_joint


@register_method("one-for-all")
class OneForAllLearner(MLPFieldLearner):
    """A single MLP vector field shared by every environment; contexts have size 0."""

    architecture = "mlp"

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed, in_dim=state_dim)

    def field(self, n_envs: int) -> VectorField:
        no_context = self.model.weights[0].new_zeros(n_envs, 0)
        return VectorField(shared_mlp_field(self.model, no_context, self.state_dim, self.act))

    def context_parameters(self):
        return []

    def loss(self, batch, envs=None):
        sub = batch.subset(envs)
        return per_env_mse(self.roll(self.field(sub.n_envs), sub), sub.X).mean()

    def fit(self, train, checkpoint=None):
        return train_joint(self, train, self.cfg["training"], checkpoint)

    def predict(self, batch, contexts=None):
        with torch.no_grad():
            return rollout(self.field(batch.n_envs), batch.x0, batch.t, **self.solver)

    def adapt(self, support):
        return torch.zeros(support.n_envs, 0, device=self.device)

    def contexts(self):
        return torch.zeros(self.n_envs, 0, device=self.device)

    def state_dict(self):
        return {"model": self.model.state_dict(), "nfe": self.nfe}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.nfe = state["nfe"]

    def counters(self):
        return {**super().counters(), "adaptation": "none"}
