"""CoDA (Kirchmeyer et al., ICML 2022; docs/METHOD.md §4): θ_e = θ + H ξ_e, trained jointly."""

from __future__ import annotations

from torch import Tensor

from mixer.methods.catalog import register_method
from mixer.methods.context_model import ContextMixtureLearner
from mixer.training.adaptation import per_env_mse
from mixer.training.loops import train_joint


@register_method("coda")
class CoDALearner(ContextMixtureLearner):
    """One expert of the ``coda`` bank (or, with ``backbone: plrnn``, the PL-RNN: the same
    θ + H ξ over its parameters, teacher-forced as in the mixtures), one optimiser over θ, H
    and Ξ, with the regulariser λ_ξ Σ_e ||ξ_e||² + λ_H ||H||_{1,2}."""

    backbones = ("coda", "plrnn")
    default_backbone = "coda"
    hyperparameters = {
        "coda_lambda_ctx": {
            "description": (
                "Weight lambda_xi of sum_e ||xi_e||^2 (also kept at adaptation); 0 disables."
            ),
            "type": "number",
            "minimum": 0,
            "default": 1.0e-4,
        },
        "coda_clip_grad_norm": {
            "description": (
                "Clip the global gradient norm to this before every step, as CoDA's code does "
                "(1.0); null: no clipping."
            ),
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "default": 1.0,
        },
        "coda_lambda_hyper": {
            "description": (
                "Weight lambda_H of the l1,2 group norm of H (sum over root parameters of the "
                "2-norm of their d_xi coefficients); 0 disables."
            ),
            "type": "number",
            "minimum": 0,
            "default": 1.0e-6,
        },
    }

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(
            cfg, state_dim, n_envs, device, seed, backbone=cfg["backbone"], n_experts=1
        )

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
        clip = self.cfg["coda_clip_grad_norm"]
        return train_joint(self, train, self.cfg["training"], checkpoint, clip_grad_norm=clip)

    def adapt(self, support):
        return self.adapt_from_zeros(support, penalty=self.cfg["coda_lambda_ctx"])

    def counters(self):
        return {"nfe": self.nfe, "context_dim": self.cfg["context_dim"], "adaptation": "contexts"}
