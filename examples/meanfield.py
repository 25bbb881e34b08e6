"""A mean-field baseline: one shared neural ODE, environments differ by a constant drift."""

import torch
from torch import nn

from mixer.methods import Learner
from mixer.models import VectorField, rollout
from mixer.training import fit_new_contexts, train_joint


class MeanField(Learner):
    """f(x; ξ_e) = MLP(x) + ξ_e, with one drift ξ_e ∈ R^d per environment."""

    hyperparameters = {
        "width": {"description": "Hidden width of the MLP.", "type": "integer", "default": 32}
    }

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        w = cfg["width"]
        self.net = nn.Sequential(nn.Linear(state_dim, w), nn.SiLU(), nn.Linear(w, state_dim))
        self.net.to(device)
        self.ctx = nn.Parameter(torch.zeros(n_envs, state_dim, device=device))

    def trajectories(self, ctx, batch):  # ctx [E, d] -> trajectories [E, N, T, d]
        field = VectorField(lambda t, x: self.net(x) + ctx[:, None, :])
        return rollout(field, batch.x0, batch.t, **self.cfg["solver"])

    def loss(self, batch, envs=None):
        ctx = self.ctx if envs is None else self.ctx[envs]
        sub = batch.subset(envs)
        return (self.trajectories(ctx, sub) - sub.X).square().mean()

    def context_parameters(self):
        return [self.ctx]

    def model_parameters(self):
        return list(self.net.parameters())

    def fit(self, train, checkpoint=None):
        return train_joint(self, train, self.cfg["training"], checkpoint)

    def predict(self, batch, contexts=None):
        with torch.no_grad():
            return self.trajectories(self.ctx if contexts is None else contexts, batch)

    def adapt(self, support):
        init = torch.zeros(support.n_envs, self.state_dim, device=self.device)
        fit = lambda ctx: self.trajectories(ctx, support)  # noqa: E731
        cfg = self.cfg["adaptation"]
        return fit_new_contexts(fit, init, support, cfg, self.model_parameters())[0]

    def contexts(self):
        return self.ctx.detach()

    def state_dict(self):
        return {"net": self.net.state_dict(), "ctx": self.ctx.detach().clone()}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["net"])
        self.ctx.data.copy_(state["ctx"])
