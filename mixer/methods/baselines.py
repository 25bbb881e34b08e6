"""The baselines of METHOD.md §4 behind the :class:`Learner` interface.

- ``one-for-all``: one neural ODE for every environment, no context, no adaptation.
- ``coda``: θ_e = θ + H ξ_e (Kirchmeyer et al. 2022), θ, H and Ξ optimised jointly with
  λ_ξ Σ_e ||ξ_e||² + λ_H ||H||_{1,2}. Its root network is an MLP vector field, or, with
  ``backbone: plrnn``, the hierarchical PL-RNN (the same θ + H ξ over the PL-RNN's parameters,
  teacher-forced as in the mixtures): CoDA-style training of the PL-RNN.
- ``cavia``: the context φ is an extra input of the field, fitted by a few gradient steps per
  environment inside the meta-training loop (Zintgraf et al. 2019), second order by default.
- ``ncf``: contextual self-modulation (Nzoyem et al. 2025): each environment is also rolled out
  from its pool's contexts with a first-order Taylor correction, trained by the proximal
  alternating loop.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.func import jvp

from mixer.adaptation import fit_new_contexts, per_env_mse
from mixer.batch import EnvBatch
from mixer.methods.base import Learner, MixtureTrajectories, register_method
from mixer.models import VectorField, backbone_class, build_mixture, rollout
from mixer.models.base import StackedLayers, activation_fn, apply_layers, mlp_sizes
from mixer.models.ncf import taylor_field as ncf_taylor_field
from mixer.models.shared import shared_mlp_field
from mixer.training import train_alternating, train_joint


def fit_contexts(learner, support: EnvBatch, penalty: float = 0.0) -> Tensor:
    """Context-only adaptation of the baselines: zeros, then the shared adaptation loop."""
    init = torch.zeros(support.n_envs, learner.ctx_dim, device=learner.device)
    frozen = [p for p in learner.model_parameters() if p.requires_grad]
    cfg = learner.cfg["adaptation"]
    trajectories_of = learner.support_trajectories(support)
    return fit_new_contexts(trajectories_of, init, support, cfg, frozen, penalty)[0]


class _Baseline(Learner):
    """What the baselines share: the solver settings, a counter of field evaluations."""

    ctx_dim = 0

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        self.solver = dict(cfg["solver"])
        self.nfe = 0

    def active_experts(self):
        return None

    def after_inner_step(self, batch, inner_step):
        pass

    def log_extras(self):
        return {}

    def _roll(self, field: VectorField, batch: EnvBatch) -> Tensor:
        pred = rollout(field, batch.x0, batch.t, **self.solver)
        self.nfe += field.nfe
        return pred

    def counters(self):
        return {"nfe": self.nfe, "context_dim": self.ctx_dim}


@register_method("one-for-all")
class OneForAllLearner(_Baseline):
    """A single MLP vector field shared by every environment; contexts have size 0."""

    architecture = "mlp"

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        sizes = mlp_sizes(state_dim, cfg["width"], cfg["depth"], state_dim)
        self.model = StackedLayers(sizes, 1, self.generator).to(device)
        self.act = activation_fn(cfg["activation"])

    def field(self, n_envs: int) -> VectorField:
        layers = [
            (w.expand(n_envs, *w.shape[1:]), b.expand(n_envs, *b.shape[1:]))
            for w, b in zip(self.model.weights, self.model.biases, strict=True)
        ]
        return VectorField(lambda t, x: apply_layers(layers, x, self.act))

    def context_parameters(self):
        return []

    def model_parameters(self):
        return list(self.model.parameters())

    def loss(self, batch, envs=None):
        sub = batch.subset(envs)
        return per_env_mse(self._roll(self.field(sub.n_envs), sub), sub.X).mean()

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


class _ContextBaseline(MixtureTrajectories, _Baseline):
    """A baseline built on one expert (K = 1) of a bank, with one context per environment."""

    backbone = ""

    @classmethod
    def backbone_of(cls, cfg: dict) -> str:
        return cls.backbone

    @classmethod
    def architecture_of(cls, cfg: dict) -> str:
        return cls.backbone_of(cfg)

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        self.ctx_dim = cfg["context_dim"]
        backbone = self.backbone_of(cfg)
        self.model = build_mixture(
            backbone,
            state_dim,
            self.ctx_dim,
            1,
            width=cfg["width"],
            depth=cfg["depth"],
            activation=cfg["activation"],
            split_context=False,
            gate_mode="refit",
            generator=self.generator,
            options=backbone_class(backbone).options_from_config(cfg),
        ).to(device)
        self._train: EnvBatch | None = None
        init = torch.zeros(n_envs, self.ctx_dim)
        if cfg["context_init"] == "random":
            init = 1e-2 * torch.randn(n_envs, self.ctx_dim, generator=self.generator)
        self.ctx = nn.Parameter(init.to(device))

    def field(self, contexts: Tensor) -> VectorField:
        return self.model.vector_field(contexts)

    def log_extras(self):
        return self.sequence_log()

    def context_parameters(self):
        return [self.ctx]

    def model_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def contexts(self):
        return self.ctx.detach()

    def state_dict(self):
        return {"model": self.model.state_dict(), "ctx": self.ctx.detach().clone(), "nfe": self.nfe}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            self.ctx.copy_(state["ctx"])
        self.nfe = state["nfe"]


@register_method("coda")
class CoDALearner(_ContextBaseline):
    """CoDA: the ``coda`` bank with K = 1, one optimiser over θ, H and Ξ, regularised.

    With ``backbone: plrnn`` the bank is the PL-RNN (same θ + H ξ layout, same regulariser);
    any other ``backbone`` value is ignored (the MLP vector field of CoDA).
    """

    backbone = architecture = "coda"

    @classmethod
    def backbone_of(cls, cfg: dict) -> str:
        return "plrnn" if cfg.get("backbone") == "plrnn" else "coda"

    def regulariser(self) -> Tensor:
        """λ_ξ Σ_e ||ξ_e||² + λ_H Σ_rows ||H_row||_2 (a row: one root parameter's d_ξ weights)."""
        hyper = self.model.experts.hyper  # [K = 1, d_ξ, d_θ]
        group_norm = hyper.square().sum(dim=1).sqrt().sum()
        return (
            self.cfg["coda_lambda_ctx"] * self.ctx.square().sum()
            + self.cfg["coda_lambda_hyper"] * group_norm
        )

    def loss(self, batch, envs=None):
        sub = batch.subset(envs)
        contexts = self.ctx if envs is None else self.ctx[envs]
        mse = per_env_mse(self.trajectories(contexts, sub, self.tf_alpha), sub.X).mean()
        return mse + self.regulariser()

    def fit(self, train, checkpoint=None):
        self._train = train
        return train_joint(self, train, self.cfg["training"], checkpoint)

    def adapt(self, support):
        return fit_contexts(self, support, penalty=self.cfg["coda_lambda_ctx"])

    def counters(self):
        return {**super().counters(), "adaptation": "contexts"}


@register_method("ncf")
class NCFLearner(_ContextBaseline):
    """NCF with contextual self-modulation, trained by the proximal alternating loop."""

    backbone = architecture = "ncf"

    def pool(self, envs: Tensor) -> Tensor:
        """Pool members [len(envs), P] of each environment among all training environments.

        ``random``: P distinct environments drawn uniformly (the environment itself may be one).
        ``nearest``: the P nearest contexts in Euclidean distance (the environment itself first),
        ties broken at random. Both draw from the learner's generator.
        """
        n_pool = min(self.cfg["ncf_pool_size"], self.n_envs)
        keys = torch.rand(len(envs), self.n_envs, generator=self.generator)
        order = keys.argsort(dim=1).to(self.device)  # a random permutation per row
        if self.cfg["ncf_pool"] == "nearest":
            ctx = self.ctx.detach()
            dist = torch.cdist(ctx[envs], ctx).gather(1, order)
            order = order.gather(1, dist.argsort(dim=1, stable=True))
        return order[:, :n_pool]

    def taylor_field(self, pool_ctx: Tensor, delta: Tensor) -> VectorField:
        """f(x; ξ_j) + J_ξ f(x; ξ_j) (ξ_e − ξ_j) for rows (ξ_j, ξ_e − ξ_j), by forward-mode JVP.

        Only the first main layer's bias depends on the context, so its JVP is taken once per
        rollout and pushed through the state part of the field at every evaluation.
        """
        experts = self.model.experts
        route = torch.zeros(len(pool_ctx), dtype=torch.long, device=pool_ctx.device)
        weights, tangent = jvp(
            lambda c: experts.env_weights(route, c).first_bias, (pool_ctx,), (delta,)
        )
        base = replace(experts.env_weights(route, pool_ctx), first_bias=weights)
        return VectorField(ncf_taylor_field(experts, base, tangent))

    def loss(self, batch, envs=None):
        sub = batch.subset(envs)
        if envs is None:
            envs = torch.arange(self.n_envs, device=self.device)
        members = self.pool(envs)  # [E, P]
        n_pool = members.shape[1]
        own = self.ctx[envs].repeat_interleave(n_pool, dim=0)  # row e·P + j: environment e
        pool_ctx = self.ctx[members.reshape(-1)]
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
        return fit_contexts(self, support)

    def counters(self):
        return {**super().counters(), "adaptation": "contexts"}


@register_method("cavia")
class CAVIALearner(_Baseline):
    """CAVIA for ODEs: f(x, φ) = MLP([x, φ]); φ fitted by an inner gradient loop per environment.

    Training support/query are the first/second half of each environment's trajectories (the
    same trajectories for both when an environment has only one).
    """

    architecture = "mlp-context-input"

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        self.ctx_dim = cfg["context_dim"]
        sizes = mlp_sizes(state_dim + self.ctx_dim, cfg["width"], cfg["depth"], state_dim)
        self.model = StackedLayers(sizes, 1, self.generator).to(device)
        self.act = activation_fn(cfg["activation"])
        self.ctx = torch.zeros(n_envs, self.ctx_dim, device=device)

    def field(self, phi: Tensor) -> VectorField:
        """f([x, φ_e]) for φ [E, d_φ]; φ's part of the first layer is folded into its bias."""
        return VectorField(shared_mlp_field(self.model, phi, self.state_dim, self.act))

    def inner_loop(
        self, support: EnvBatch, steps: int, create_graph: bool, first_order: bool = False
    ) -> Tensor:
        """φ ← 0, then ``steps`` gradient steps of size ``cavia_inner_lr`` on the support loss.

        The loss is the SUM over environments of their MSE, so each φ_e gets its own gradient.
        With ``create_graph`` the result stays differentiable in θ (second order); with
        ``first_order`` each inner gradient is detached.
        """
        phi = support.X.new_zeros(support.n_envs, self.ctx_dim).requires_grad_(True)
        with torch.enable_grad():
            for _ in range(steps):
                loss = per_env_mse(self._roll(self.field(phi), support), support.X).sum()
                keep = create_graph and not first_order
                (grad,) = torch.autograd.grad(loss, phi, create_graph=keep)
                if first_order:
                    grad = grad.detach()
                phi = phi - self.cfg["cavia_inner_lr"] * grad
                if not create_graph:
                    phi = phi.detach().requires_grad_(True)
        return phi

    @staticmethod
    def split(batch: EnvBatch) -> tuple[EnvBatch, EnvBatch]:
        n = batch.X.shape[1]
        if n < 2:
            return batch, batch
        half = n // 2
        support = EnvBatch(batch.X[:, :half], batch.t, batch.env_id, batch.family)
        query = EnvBatch(batch.X[:, half:], batch.t, batch.env_id, batch.family)
        return support, query

    def meta_loss(self, support: EnvBatch, query: EnvBatch, first_order: bool) -> Tensor:
        """Query MSE (mean over environments) after the inner loop on the support."""
        phi = self.inner_loop(
            support, self.cfg["cavia_inner_steps"], create_graph=True, first_order=first_order
        )
        return per_env_mse(self._roll(self.field(phi), query), query.X).mean()

    def context_parameters(self):
        return []

    def model_parameters(self):
        return list(self.model.parameters())

    def loss(self, batch, envs=None):
        support, query = self.split(batch.subset(envs))
        return self.meta_loss(support, query, self.cfg["cavia_first_order"])

    def fit(self, train, checkpoint=None):
        log = train_joint(self, train, self.cfg["training"], checkpoint)
        self.ctx = self.inner_loop(train, self.cfg["cavia_inner_steps"], False).detach()
        return log

    def predict(self, batch, contexts=None):
        contexts = self.ctx if contexts is None else contexts
        with torch.no_grad():
            return rollout(self.field(contexts), batch.x0, batch.t, **self.solver)

    def adapt(self, support):
        return self.inner_loop(support, self.cfg["cavia_inner_steps_test"], False).detach()

    def contexts(self):
        return self.ctx

    def state_dict(self):
        return {"model": self.model.state_dict(), "ctx": self.ctx.clone(), "nfe": self.nfe}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.ctx = state["ctx"].to(self.device)
        self.nfe = state["nfe"]

    def counters(self):
        return {**super().counters(), "adaptation": "inner-loop"}
