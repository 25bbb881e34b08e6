"""CAVIA (Zintgraf et al., ICML 2019) adapted to ODEs (docs/METHOD.md §4)."""

from __future__ import annotations

import torch
from torch import Tensor

from mixer.methods.catalog import register_method
from mixer.methods.keys import CONTEXT_DIM
from mixer.methods.mlp_field import MLPFieldLearner
from mixer.models import VectorField, rollout
from mixer.models.integrate.sensitivity import sensitivity_rollout
from mixer.models.integrate.solvers import FIXED_STEP_METHODS, evaluations
from mixer.models.shared import shared_mlp_field
from mixer.training.adaptation import per_env_mse
from mixer.training.batches import EnvBatch
from mixer.training.loops import train_joint

# Largest context whose inner gradient comes from forward sensitivities (see
# CAVIALearner.sensitivities); the suite's contexts are 2-6 entries, the CAVIA authors' 1024.
SENSITIVITY_MAX_DIM = 64


@register_method("cavia")
class CAVIALearner(MLPFieldLearner):
    """f(x, φ) = MLP([x, φ]); φ fitted by an inner gradient loop per environment.

    Training support/query are the first/second half of each environment's trajectories (the
    same trajectories for both when an environment has only one).
    """

    architecture = "mlp-context-input"
    hyperparameters = {
        **CONTEXT_DIM,
        "cavia_inner_steps": {
            "description": "Inner gradient steps on the context during meta-training (paper 1).",
            "type": "integer",
            "minimum": 1,
            "default": 1,
        },
        "cavia_inner_lr": {
            "description": "Step size of the inner (context) gradient steps (paper 1.0).",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0,
        },
        "cavia_inner_steps_test": {
            "description": "Inner gradient steps on the context at test-time adaptation.",
            "type": "integer",
            "minimum": 0,
            "default": 10,
        },
        "cavia_first_order": {
            "description": (
                "Detach the inner gradients (first-order meta-gradient); false is second order."
            ),
            "type": "boolean",
            "default": False,
        },
    }

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        self.ctx_dim = cfg["context_dim"]
        super().__init__(cfg, state_dim, n_envs, device, seed, in_dim=state_dim + self.ctx_dim)
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
        if not self.sensitivities():
            return self._inner_loop_autograd(support, steps, create_graph, first_order)
        phi = support.X.new_zeros(support.n_envs, self.ctx_dim)
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            for _ in range(steps):
                grad = self.support_gradient(phi, support)
                if first_order:
                    grad = grad.detach()
                phi = phi - self.cfg["cavia_inner_lr"] * grad
        return phi

    def sensitivities(self) -> bool:
        """Whether the inner gradient comes from forward sensitivities: a fixed-step solver
        (exact derivatives of its steps) and a context of at most ``SENSITIVITY_MAX_DIM``
        entries. They carry one tangent rollout per context entry, so at the CAVIA authors'
        d_φ = 1024 they cost ~1024 rollouts and ~20 GB on LV; autograd's double reverse
        pass costs a few rollouts whatever d_φ."""
        fixed = self.solver["method"] in FIXED_STEP_METHODS
        return fixed and self.ctx_dim <= SENSITIVITY_MAX_DIM

    def support_gradient(self, phi: Tensor, support: EnvBatch) -> Tensor:
        """∂/∂φ of Σ_e MSE_e on the support [E, d_φ], from the forward sensitivities ∂x/∂φ_e.

        Made of first-order differentiable operations: when they are recorded, the
        meta-gradient through the inner step is one reverse pass (exact second order; the
        finite-difference test checks it), not autograd's reverse pass through a reverse pass.
        Fixed-step solvers only (there the sensitivities are exact derivatives of the steps).
        """
        pred, jac = self.fast_roll(phi, support, jacobian=True)
        _, n_rows, n_times, dim = support.X.shape
        resid = pred - support.X
        return torch.einsum("entd,ekntd->ek", resid, jac) * (2 / (n_rows * n_times * dim))

    def fast_roll(self, phi: Tensor, batch: EnvBatch, jacobian: bool):
        """:func:`~mixer.models.integrate.sensitivity.sensitivity_rollout` of ``batch``, counted in
        ``nfe`` like :meth:`roll`."""
        method, substeps = self.solver["method"], self.solver["substeps"]
        out = sensitivity_rollout(
            self.model, phi, batch.x0, batch.t, self.cfg["activation"], jacobian, method, substeps
        )
        self.nfe += evaluations(method, batch.t.shape[1], substeps)
        return out

    def _inner_loop_autograd(self, support, steps, create_graph, first_order):
        """The inner loop by autograd (second order: a reverse pass through the recorded
        reverse pass), for adaptive solvers, whose step control the sensitivities would
        change."""
        phi = support.X.new_zeros(support.n_envs, self.ctx_dim).requires_grad_(True)
        with torch.enable_grad():
            for _ in range(steps):
                loss = per_env_mse(self.roll(self.field(phi), support), support.X).sum()
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
        if self.sensitivities():
            pred, _ = self.fast_roll(phi, query, jacobian=False)
        else:
            pred = self.roll(self.field(phi), query)
        return per_env_mse(pred, query.X).mean()

    def context_parameters(self):
        return []

    def loss(self, batch, envs=None):
        support, query = self.split(batch.subset(envs))
        return self.meta_loss(support, query, self.cfg["cavia_first_order"])

    def fit(self, train, checkpoint=None):
        self._train = train
        log = train_joint(self, train, self.cfg["training"], checkpoint)
        self.ctx = self.training_contexts()
        return log

    def training_contexts(self) -> Tensor:
        """φ of every training environment: the inner loop on its training trajectories."""
        return self.inner_loop(self._train, self.cfg["cavia_inner_steps"], False).detach()

    def validation_mse(self):
        self.ctx = self.training_contexts()  # the contexts the state kept as best-on-val holds
        return super().validation_mse()

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
