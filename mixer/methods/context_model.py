"""The base of every learner built on a :class:`MixtureOfExperts` with one context per
environment: the MixER mixtures (K experts and a gate) and the CoDA and NCF baselines (K = 1).

Every path from contexts to trajectories goes through ``MixtureOfExperts.trajectories``, so
an ODE bank is rolled out and a PL-RNN is unrolled (teacher-forced with α < 1) without the
learner knowing which.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixer.methods.keys import CONTEXT, MLP
from mixer.methods.learner import Learner, run_on
from mixer.models import MixtureOfExperts, backbone_class, build_mixture
from mixer.training.adaptation import fit_new_contexts
from mixer.training.batches import EnvBatch


class ContextMixtureLearner(Learner):
    """A mixture model ``self.model`` and training contexts ``self.ctx`` [E, d_ξ].

    Attributes set here: ``model``, ``ctx`` (a parameter), ``solver`` (the solver block),
    ``nfe`` (vector-field evaluations of training rollouts) and ``_train`` (the training
    batch, set by ``fit``, for the per-outer-step PL-RNN scores).
    """

    hyperparameters = {**MLP, **CONTEXT}

    model: MixtureOfExperts
    ctx: nn.Parameter

    def __init__(
        self,
        cfg: dict,
        state_dim: int,
        n_envs: int,
        device: torch.device,
        seed: int,
        *,
        backbone: str,
        n_experts: int,
        split_context: bool = False,
        gate_mode: str = "refit",
        dense: bool = False,
        random_contexts: bool = True,
    ):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        self.solver = dict(cfg["solver"])
        self.nfe = 0
        self._train: EnvBatch | None = None
        # The bank, then the gate, then the contexts draw from one generator, in this order.
        self.model = build_mixture(
            backbone,
            state_dim,
            cfg["context_dim"],
            n_experts,
            width=cfg["width"],
            depth=cfg["depth"],
            activation=cfg["activation"],
            split_context=split_context,
            gate_mode=gate_mode,
            dense=dense,
            generator=self.generator,
            options=backbone_class(backbone).options_from_config(cfg),
        ).to(device)
        init = torch.zeros(n_envs, cfg["context_dim"])
        if cfg["context_init"] == "random" and random_contexts:
            init = 1e-2 * torch.randn(n_envs, cfg["context_dim"], generator=self.generator)
        self.ctx = nn.Parameter(init.to(device))

    @property
    def discrete_time(self) -> bool:
        return self.model.experts.discrete_time

    def context_parameters(self):
        return [self.ctx]

    def model_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def contexts(self):
        return self.ctx.detach()

    def trajectories(self, contexts, batch: EnvBatch, alpha: float = 1.0) -> Tensor:
        """Training trajectories (counted in ``nfe``); α < 1 teacher-forces a PL-RNN."""
        pred = self.model.trajectories(
            contexts, batch.x0, batch.t, data=batch.X, alpha=alpha, **self.solver
        )
        self.nfe += self.model.last_nfe
        return pred

    def predict(self, batch: EnvBatch, contexts=None) -> Tensor:
        """Trajectories from each first state; a PL-RNN runs free (no teacher forcing)."""
        contexts = self.ctx if contexts is None else contexts
        with torch.no_grad():
            return self.model.trajectories(contexts, batch.x0, batch.t, **self.solver)

    def forecast(self, history: EnvBatch, future: EnvBatch, contexts=None) -> Tensor:
        """A PL-RNN runs over the whole ``history`` teacher-forced at the final α, so that
        its latent state at the end of the history is the one the data led it to, then on
        freely over ``future``'s times (α = 1: the future values, zeroed, are never read).
        An ODE learner starts from the last history sample (``Learner.forecast``)."""
        if not self.discrete_time:
            return super().forecast(history, future, contexts)
        contexts = self.ctx if contexts is None else contexts
        joined = run_on(history, future)
        n_past, n_times = history.X.shape[2], joined.t.shape[1]
        alpha = torch.ones(n_times - 1, dtype=joined.X.dtype, device=joined.X.device)
        # Step s is forced by x_s: steps 0 .. n_past - 1 read the history (the last of them
        # makes the first future sample), the later ones nothing.
        alpha[:n_past] = self.final_tf_alpha()
        data = torch.nan_to_num(joined.X, nan=0.0)
        with torch.no_grad():
            pred = self.model.trajectories(
                contexts, history.x0, joined.t, data=data, alpha=alpha, **self.solver
            )
        return pred[:, :, n_past:]

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

    def log_extras(self):
        return self.sequence_log()

    def sequence_losses(self, batch: EnvBatch, contexts=None) -> dict:
        if not self.discrete_time:
            return {}
        contexts = self.ctx if contexts is None else contexts
        return self._scores(contexts, batch, self.final_tf_alpha())

    def adapt_from_zeros(self, support: EnvBatch, penalty: float = 0.0) -> Tensor:
        """Context-only adaptation from zero contexts (+ ``penalty`` ||ξ||²), the model frozen."""
        init = torch.zeros(support.n_envs, self.cfg["context_dim"], device=self.device)
        frozen = [p for p in self.model_parameters() if p.requires_grad]
        trajectories_of = self.support_trajectories(support)
        cfg = self.cfg["adaptation"]
        return fit_new_contexts(trajectories_of, init, support, cfg, frozen, penalty)[0]

    def state_dict(self):
        return {"model": self.model.state_dict(), "ctx": self.ctx.detach().clone(), "nfe": self.nfe}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            self.ctx.copy_(state["ctx"])
        self.nfe = state["nfe"]
