"""MixER and the mixture variants (METHOD.md §3): one learner class, four gate policies.

- ``mixer``: gate refitted every ``gate_every`` inner steps (K-means + Hungarian + ridge LS).
- ``mixer-faithful``: the reference code's refit (L1 K-means that gives up, greedy assignment).
- ``moe-gd``: gate trained by gradient (top-1 scaled by its probability, load balancing).
- ``moe-frozen``: hard top-1 branch on a random gate that never learns (zero gradient).
- ``single``: K = 1, the plain meta-learner trained by the same loop.
"""

from __future__ import annotations

import torch
from torch import nn

from mixer import gating
from mixer.adaptation import fit_new_contexts
from mixer.batch import EnvBatch
from mixer.methods.base import Learner, MixtureTrajectories, register_method
from mixer.models import backbone_class, build_mixture
from mixer.optim import is_expert_stacked, mark_expert_stacked
from mixer.training import train_alternating

GATE_POLICIES = {
    "mixer": ("refit", "hungarian"),
    "mixer-faithful": ("refit", "faithful"),
    "moe-gd": ("gd", None),
    "moe-frozen": ("frozen", None),
    "single": ("refit", None),
}


@register_method(*GATE_POLICIES)
class MixtureLearner(MixtureTrajectories, Learner):
    def __init__(self, cfg, state_dim, n_envs, device, seed):
        super().__init__(cfg, state_dim, n_envs, device, seed)
        self.gate_mode, self.refit_kind = GATE_POLICIES[cfg["learner"]]
        n_experts = 1 if cfg["learner"] == "single" else cfg["n_experts"]
        if self.refit_kind is not None:
            gating.check_refit_feasible(n_envs, n_experts)
        self.model = build_mixture(
            cfg["backbone"],
            state_dim,
            cfg["context_dim"],
            n_experts,
            width=cfg["width"],
            depth=cfg["depth"],
            activation=cfg["activation"],
            split_context=cfg["split_context"] and n_experts > 1,
            gate_mode=self.gate_mode,
            dense=cfg.get("dense", False),
            generator=self.generator,
            options=backbone_class(cfg["backbone"]).options_from_config(cfg),
        ).to(device)
        self._train: EnvBatch | None = None  # for the per-outer-step PL-RNN scores
        for p in self.model.experts.parameters():
            mark_expert_stacked(p)
        init = torch.zeros(n_envs, cfg["context_dim"])
        if cfg["context_init"] == "random" and self.refit_kind != "faithful":
            init = 1e-2 * torch.randn(n_envs, cfg["context_dim"], generator=self.generator)
        self.ctx = nn.Parameter(init.to(device))
        self.solver = dict(cfg["solver"])
        self.centroids = None
        self.refits_done = self.refits_skipped = 0
        self.skip_reasons: dict[str, int] = {}
        self.nfe = 0
        self._routed = torch.ones(n_experts, dtype=torch.bool, device=device)
        self._opt_model = None
        # Common-ancestor warm-up: until the first refit every environment goes to expert 0
        # (zero weights, bias favouring expert 0), whatever its context; at the first refit
        # that expert is copied into all K (see _clone_experts).
        self.clone_at_refit = (
            cfg.get("gate_warmup_clone", False) and self.gate_mode == "refit" and n_experts > 1
        )
        if self.clone_at_refit:
            gate = torch.zeros_like(self.model.gate)
            gate[-1, 0] = 1.0
            self.model.set_gate(gate)

    # --- hooks of the alternating loop ---

    def context_parameters(self):
        return [self.ctx]

    def model_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self, batch: EnvBatch, envs=None):
        sub = batch.subset(envs)
        contexts = self.ctx if envs is None else self.ctx[envs]
        pred = self.trajectories(contexts, sub, self.tf_alpha)
        self._routed = torch.bincount(
            self.model.route(contexts), minlength=self.model.n_experts
        ).bool()
        loss = (pred - sub.X).square().mean()
        if self.gate_mode == "gd" and self.cfg["load_balancing"] > 0:
            loss = loss + self.cfg["load_balancing"] * self.model.load_balancing_loss(contexts)
        return loss

    def active_experts(self):
        return self._routed

    def after_inner_step(self, batch, inner_step):
        every = self.cfg["gate_every"]
        warm = inner_step > self.cfg["gate_warmup"]
        if self.refit_kind is not None and warm and every and inner_step % every == 0:
            self.refit_gate(batch)

    def attach_optimizers(self, opt_ctx, opt_model):
        self._opt_model = opt_model

    def log_extras(self):
        refits = {"refits_done": self.refits_done, "refits_skipped": self.refits_skipped}
        return {**refits, **self.sequence_log()}

    # --- the MixER update ---

    def refit_gate(self, batch: EnvBatch) -> None:
        contexts = self.ctx.detach()
        K = self.model.n_experts
        clone = self.clone_at_refit and self.refits_done == 0
        losses = self.model.expert_losses(
            contexts, batch.x0, batch.t, batch.X, alpha=self.tf_alpha, **self.solver
        )
        if clone:
            # The experts are about to become copies of the warmed-up expert 0, so every column
            # of the loss matrix is its column: the cluster-to-expert assignment starts neutral.
            losses = losses[:, :1].expand(-1, K)
        if self.refit_kind == "faithful":
            result = gating.refit_gate_faithful(contexts, losses, K, self.generator)
        else:
            result = gating.refit_gate(
                contexts,
                losses,
                K,
                self.generator,
                prev_centroids=self.centroids,
                noise_std=self.cfg["gate_noise"],
                ridge=self.cfg["gate_ridge"],
                n_init=self.cfg["gate_kmeans_restarts"],
            )
        if result.skipped:
            self.refits_skipped += 1
            self.skip_reasons[result.reason] = self.skip_reasons.get(result.reason, 0) + 1
            return
        if clone:
            self._clone_experts(source=0)
        self.model.set_gate(result.gate)
        self.centroids = result.centroids
        self.refits_done += 1

    @torch.no_grad()
    def _clone_experts(self, source: int) -> None:
        """Copy expert ``source`` into every expert and reset their optimiser moments."""
        for p in self.model.experts.parameters():
            if is_expert_stacked(p):
                p.copy_(p[source : source + 1].expand_as(p))
        if self._opt_model is not None:
            self._opt_model.reset_expert_state()

    # --- the Learner interface ---

    def fit(self, train: EnvBatch, checkpoint=None):
        self._train = train
        return train_alternating(self, train, self.cfg["training"], checkpoint)

    def contexts(self):
        return self.ctx.detach()

    def routing(self, contexts=None):
        return self.model.route(self.ctx if contexts is None else contexts)

    def adapt(self, support: EnvBatch) -> torch.Tensor:
        """Contexts of new environments; θ and the gate stay frozen (METHOD.md §5).

        A PL-RNN adapts on the loss it was trained on: teacher forcing at the final α.
        """
        cfg = self.cfg["adaptation"]
        starts = [torch.zeros(self.cfg["context_dim"], device=self.device)]
        if cfg["init"] == "multistart" and self.centroids is not None:
            starts = list(self.centroids.to(self.device))
        n_new, n_starts = support.n_envs, len(starts)
        # Every start of every environment is one row of a single batch: [S·E_new, d_ξ].
        init = torch.stack(starts).repeat_interleave(n_new, dim=0)
        tiled = EnvBatch(
            support.X.repeat(n_starts, 1, 1, 1),
            support.t.repeat(n_starts, 1),
            support.env_id,
            support.family,
        )
        frozen = [p for p in self.model.parameters() if p.requires_grad]
        best_ctx, best_loss = fit_new_contexts(
            self.support_trajectories(tiled), init, tiled, cfg, frozen
        )
        best = best_loss.view(n_starts, n_new).argmin(dim=0)  # best start per environment
        return best_ctx.view(n_starts, n_new, -1)[best, torch.arange(n_new)]

    def state_dict(self):
        return {
            "model": self.model.state_dict(),
            "ctx": self.ctx.detach().clone(),
            "centroids": self.centroids,
            "refits_done": self.refits_done,
            "refits_skipped": self.refits_skipped,
            "skip_reasons": dict(self.skip_reasons),
            "nfe": self.nfe,
        }

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            self.ctx.copy_(state["ctx"])
        self.centroids = state["centroids"]
        self.refits_done = state["refits_done"]
        self.refits_skipped = state["refits_skipped"]
        self.skip_reasons = dict(state["skip_reasons"])
        self.nfe = state["nfe"]

    def counters(self):
        return {
            "refits_done": self.refits_done,
            "refits_skipped": self.refits_skipped,
            "refit_skip_reasons": self.skip_reasons,
            "nfe": self.nfe,
            "n_experts": self.model.n_experts,
        }
