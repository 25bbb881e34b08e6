"""MixER and the mixture variants (docs/METHOD.md §3): one learner class, four gate policies.

- ``mixer``: gate refitted every ``gate_every`` inner steps (K-means + Hungarian + ridge LS).
- ``mixer-faithful``: the reference code's refit (L1 K-means that gives up, greedy assignment).
- ``moe-gd``: gate trained by gradient (top-1 scaled by its probability, load balancing).
- ``moe-frozen``: hard top-1 branch on a random gate that never learns (zero gradient).
- ``single``: K = 1, the plain meta-learner trained by the same loop.
"""

from __future__ import annotations

import torch

from mixer.methods.catalog import register_method
from mixer.methods.context_model import ContextMixtureLearner
from mixer.models import gating
from mixer.training.adaptation import fit_new_contexts
from mixer.training.batches import EnvBatch
from mixer.training.loops import train_alternating
from mixer.training.optim import is_expert_stacked, mark_expert_stacked

# Config name -> (how the gate learns, which refit).
GATE_POLICIES = {
    "mixer": ("refit", "hungarian"),
    "mixer-faithful": ("refit", "faithful"),
    "moe-gd": ("gd", None),
    "moe-frozen": ("frozen", None),
    "single": ("refit", None),
}

MIXTURE_KEYS = {
    "n_experts": {
        "description": "Number of experts K (a regime's n_experts overrides it).",
        "type": "integer",
        "minimum": 1,
        "default": 3,
    },
    "context_dim_per_expert": {
        "description": (
            "With split_context, the chunk size each expert reads: d_xi becomes K x this "
            "value for the cell's K (so one method entry serves regimes with different K). "
            "null uses context_dim as given."
        ),
        "type": ["integer", "null"],
        "minimum": 1,
        "default": None,
    },
    "split_context": {
        "description": (
            "Cut the context into K chunks, expert k reading chunk k (paper default for ODEs)."
        ),
        "type": "boolean",
        "default": True,
    },
    "gate_every": {
        "description": "(refit) Refit the gate every this many inner steps.",
        "type": "integer",
        "minimum": 1,
        "default": 12,
    },
    "gate_warmup": {
        "description": (
            "(refit) Inner steps before the first refit. Until then every environment follows "
            "the initial gate (with zero contexts: one shared expert), so that the contexts the "
            "first K-means sees already describe the dynamics; 0 refits from the start as the "
            "paper."
        ),
        "type": "integer",
        "minimum": 0,
        "default": 0,
    },
    "gate_warmup_clone": {
        "description": (
            "(refit) Common-ancestor warm-up. Until the first refit every environment is "
            "routed to expert 0 whatever its context, so the warm-up trains one shared expert "
            "and its contexts; at the first refit that expert's parameters are copied into all "
            "K experts and their optimiser moments are reset, so the cluster-to-expert "
            "assignment starts neutral and the K-means partition of the contexts alone decides "
            "the routing. false keeps the random initial gate."
        ),
        "type": "boolean",
        "default": False,
    },
    "gate_kmeans_restarts": {
        "description": (
            "(refit) K-means runs per refit: the first starts from the last refit's centroids "
            "(k-means++ at the first refit), the others from k-means++; the partition of "
            "lowest inertia wins. 1 is the paper's single run."
        ),
        "type": "integer",
        "minimum": 1,
        "default": 1,
    },
    "gate_noise": {
        "description": "(refit) Std of the noise added to the contexts in the least-squares refit.",
        "type": "number",
        "minimum": 0,
        "default": 1.0e-4,
    },
    "gate_ridge": {
        "description": "(refit) Ridge weight of the least-squares refit.",
        "type": "number",
        "minimum": 0,
        "default": 1.0e-6,
    },
    "load_balancing": {
        "description": "(moe-gd) Weight of the switch-style load-balancing loss.",
        "type": "number",
        "minimum": 0,
        "default": 0.01,
    },
    "dense": {
        "description": "(moe-gd) Mix all experts by gate probability instead of top-1.",
        "type": "boolean",
        "default": False,
    },
}


@register_method("mixer", "mixer-faithful", "moe-gd", "moe-frozen")
class MixtureLearner(ContextMixtureLearner):
    """A top-1 mixture of K context-conditioned experts; the gate policy comes from the name.

    Keys marked (refit) apply to mixer and mixer-faithful, (moe-gd) to moe-gd.
    """

    hyperparameters = MIXTURE_KEYS
    backbones = "all"
    default_backbone = "geps"

    def __init__(self, cfg, state_dim, n_envs, device, seed):
        self.gate_mode, self.refit_kind = GATE_POLICIES[cfg["learner"]]
        n_experts = self.fixed_n_experts or cfg["n_experts"]
        if self.refit_kind is not None:
            gating.check_refit_feasible(n_envs, n_experts)
        super().__init__(
            cfg,
            state_dim,
            n_envs,
            device,
            seed,
            backbone=cfg["backbone"],
            n_experts=n_experts,
            split_context=cfg["split_context"] and n_experts > 1,
            gate_mode=self.gate_mode,
            dense=cfg["dense"],
            random_contexts=self.refit_kind != "faithful",
        )
        for p in self.model.experts.parameters():
            mark_expert_stacked(p)
        self.centroids = None
        self.refits_done = self.refits_skipped = 0
        self.skip_reasons: dict[str, int] = {}
        self._routed = torch.ones(n_experts, dtype=torch.bool, device=device)
        self._opt_model = None
        # Common-ancestor warm-up: until the first refit every environment goes to expert 0
        # (zero weights, bias favouring expert 0), whatever its context; at the first refit
        # that expert is copied into all K (see _clone_experts).
        self.clone_at_refit = (
            cfg["gate_warmup_clone"] and self.gate_mode == "refit" and n_experts > 1
        )
        if self.clone_at_refit:
            gate = torch.zeros_like(self.model.gate)
            gate[-1, 0] = 1.0
            self.model.set_gate(gate)

    # --- hooks of the alternating loop ---

    def loss(self, batch: EnvBatch, envs=None):
        sub = batch.subset(envs)
        contexts = self.ctx if envs is None else self.ctx[envs]
        pred = self.trajectories(contexts, sub, self.tf_alpha)
        # The experts that receive a gradient: the routed ones, or all of them when the dense
        # ablation mixes every expert's output.
        if not self.cfg["dense"]:
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

    def routing(self, contexts=None):
        return self.model.route(self.ctx if contexts is None else contexts)

    def gate_probabilities(self, contexts=None):
        with torch.no_grad():
            return self.model.gate_probs(self.ctx if contexts is None else contexts)

    def adapt(self, support: EnvBatch) -> torch.Tensor:
        """Contexts of new environments; θ and the gate stay frozen (docs/METHOD.md §5).

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
            **super().state_dict(),
            "centroids": self.centroids,
            "refits_done": self.refits_done,
            "refits_skipped": self.refits_skipped,
            "skip_reasons": dict(self.skip_reasons),
        }

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.centroids = state["centroids"]
        self.refits_done = state["refits_done"]
        self.refits_skipped = state["refits_skipped"]
        self.skip_reasons = dict(state["skip_reasons"])

    def counters(self):
        return {
            "refits_done": self.refits_done,
            "refits_skipped": self.refits_skipped,
            "refit_skip_reasons": self.skip_reasons,
            "nfe": self.nfe,
            "n_experts": self.model.n_experts,
        }


@register_method("single")
class SingleLearner(MixtureLearner):
    """K = 1: the plain meta-learner (one expert of the chosen backbone) trained by the same
    alternating loop; ``n_experts`` and the gate keys are accepted and have no effect."""

    fixed_n_experts = 1
