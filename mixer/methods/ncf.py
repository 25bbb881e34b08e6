"""NCF (Nzoyem et al., ICLR 2025; docs/METHOD.md §4): contextual self-modulation, trained by the
proximal alternating loop."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import jvp

from mixer.methods.catalog import register_method
from mixer.methods.context_model import ContextMixtureLearner
from mixer.models import VectorField, rollout
from mixer.models.integrate.rollout import uniform_steps
from mixer.models.integrate.solvers import FIXED_STEP_METHODS, evaluations
from mixer.models.integrate.taylor import taylor_rollout
from mixer.models.ncf import taylor_field
from mixer.training.loops import train_alternating


@register_method("ncf")
class NCFLearner(ContextMixtureLearner):
    """Each environment is also rolled out from its pool's contexts with a first-order Taylor
    correction f(x; ξ_j) + J_ξ f(x; ξ_j)(ξ_e − ξ_j); order 0 at test."""

    architecture = "ncf"
    hyperparameters = {
        "ncf_pool_size": {
            "description": "Pool size P of contexts each environment is modulated from.",
            "type": "integer",
            "minimum": 1,
            "default": 2,
        },
        "ncf_pool": {
            "description": (
                "How a pool is filled: 'random' (P environments drawn uniformly) or 'nearest' "
                "(the P nearest contexts, the environment itself first, ties broken at random)."
            ),
            "enum": ["random", "nearest"],
            "default": "nearest",
        },
    }

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed, backbone="ncf", n_experts=1)

    def pool(self, envs: Tensor) -> Tensor:
        """Pool members [len(envs), P] of each environment among all training environments.

        ``random``: P distinct environments drawn uniformly (the environment itself may be one).
        ``nearest``: the P nearest contexts in Euclidean distance (the environment itself first),
        ties broken at random. Both draw from the learner's generator.
        """
        n_pool = min(self.cfg["ncf_pool_size"], self.n_envs)
        gen = self.generator  # drawn where the generator lives (the CPU), then moved
        keys = torch.rand(len(envs), self.n_envs, generator=gen, device=gen.device)
        order = keys.argsort(dim=1).to(self.device)  # a random permutation per row
        if self.cfg["ncf_pool"] == "nearest":
            ctx = self.ctx.detach()
            dist = torch.cdist(ctx[envs], ctx).gather(1, order)
            order = order.gather(1, dist.argsort(dim=1, stable=True))
        return order[:, :n_pool]

    def taylor_field(self, pool_ctx: Tensor, delta: Tensor) -> VectorField:
        """f(x; ξ_j) + J_ξ f(x; ξ_j) (ξ_e − ξ_j) for rows (ξ_j, ξ_e − ξ_j).

        Only the first main layer's bias depends on the context: its JVP is taken once per
        rollout, then pushed through the state part of the field by hand at every evaluation
        (mixer.models.ncf.taylor_field: primal and tangent rows in one product).
        """
        return VectorField(taylor_field(self.model.experts, *self.first_bias(pool_ctx, delta)))

    def first_bias(self, pool_ctx: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        """The first main layer's bias at each row's ξ_j and its JVP along δ [rows, width]."""
        experts = self.model.experts
        route = torch.zeros(len(pool_ctx), dtype=torch.long, device=pool_ctx.device)
        return jvp(lambda c: experts.env_weights(route, c).first_bias, (pool_ctx,), (delta,))

    def taylor_rollout(self, pool_ctx: Tensor, delta: Tensor, sub, n_pool: int) -> Tensor:
        """The rollout of :meth:`taylor_field` from each environment's first states, one row
        per (environment, pool member), for a fixed-step solver: one autograd node whose
        reverse pass is written by hand (mixer.models.integrate.taylor), counted in ``nfe``."""
        first_bias, tangent = self.first_bias(pool_ctx, delta)
        method, substeps = self.solver["method"], self.solver["substeps"]
        n_times = sub.t.shape[1]
        self.nfe += evaluations(method, n_times, substeps)
        steps = uniform_steps(sub.t).repeat_interleave(n_pool)  # sub.t's check is cached
        x0 = sub.x0.repeat_interleave(n_pool, dim=0)
        bank = self.model.experts
        return taylor_rollout(bank, first_bias, tangent, x0, steps, n_times, method, substeps)

    def loss(self, batch, envs=None):
        sub = batch.subset(envs)
        if envs is None:
            envs = torch.arange(self.n_envs, device=self.device)
        members = self.pool(envs)  # [E, P]
        n_pool = members.shape[1]
        own = self.ctx[envs].repeat_interleave(n_pool, dim=0)  # row e·P + j: environment e
        pool_ctx = self.ctx[members.reshape(-1)]
        if self.solver["method"] in FIXED_STEP_METHODS:
            pred = self.taylor_rollout(pool_ctx, own - pool_ctx, sub, n_pool)
            return (pred - sub.X.repeat_interleave(n_pool, dim=0)).square().mean()
        field = self.taylor_field(pool_ctx, own - pool_ctx)
        pred = rollout(
            field,
            sub.x0.repeat_interleave(n_pool, dim=0),
            sub.t.repeat_interleave(n_pool, dim=0),
            **self.solver,
        )
        self.nfe += field.nfe
        return (pred - sub.X.repeat_interleave(n_pool, dim=0)).square().mean()

    def fit(self, train, checkpoint=None):
        return train_alternating(self, train, self.cfg["training"], checkpoint)

    def adapt(self, support):
        return self.adapt_from_zeros(support)

    def counters(self):
        return {"nfe": self.nfe, "context_dim": self.cfg["context_dim"], "adaptation": "contexts"}
