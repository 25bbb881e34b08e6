"""The sparse top-1 mixture: a linear gate on the contexts routes each environment to one expert.

The gate is W ∈ R^{(d_ξ+1)×K}, logits = [ξ; 1] @ W. Routing is computed once per forward pass
(a rollout is one forward pass), then only the routed expert's weights are materialised, so
the cost of the vector field does not grow with K (except for the ``dense`` ablation).

Gate modes:

- ``refit`` (MixER): the gate is a buffer set from outside (``set_gate``), never trained by
  gradient; output f_{k*}(x; ξ).
- ``gd`` (naive MoE): the gate is a parameter and the output is softmax(g)_{k*} f_{k*}(x; ξ),
  so the gate receives gradient through the routed probability. With ``dense=True`` the output
  is Σ_k softmax(g)_k f_k(x; ξ), which evaluates all K experts.
- ``frozen``: the gate is a random parameter that is never trained (``requires_grad=False``);
  output f_{k*}(x; ξ), unscaled.

For a discrete-time bank (the PL-RNN) the "field" is the one-step map z ↦ F(z): ``gd`` scales
the map's output by the routed probability, z_{t+1} = g_{k*} F_{k*}(z̃_t), and ``dense`` mixes
the maps. :meth:`MixtureOfExperts.trajectories` is the one entry point that turns contexts
into trajectories for either kind of bank (ODE rollout or teacher-forced / free-running
iteration); losses, predictions, the refit's loss matrix and adaptation all go through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixer.errors import ConfigError
from mixer.models.expert import Expert, as_generator, fan_in_uniform
from mixer.models.gating import gate_logits
from mixer.models.grouped import RoutedMLP
from mixer.models.integrate.rollout import VectorField

GATE_MODES = ("refit", "gd", "frozen")


def expert_context_dim(context_dim: int, n_experts: int, split_context: bool) -> int:
    """The context size each expert reads: d_ξ / K with ``split_context``, else d_ξ."""
    if not split_context:
        return context_dim
    if context_dim % n_experts:
        raise ConfigError(
            f"context_dim {context_dim} is not divisible by n_experts {n_experts} "
            f"with split_context"
        )
    return context_dim // n_experts


class MixtureOfExperts(nn.Module):
    """Top-1 mixture over an expert bank; contexts [E, d_ξ] are passed in, not owned."""

    def __init__(
        self,
        experts: Expert,
        context_dim: int,
        *,
        split_context: bool = False,
        gate_mode: str = "refit",
        dense: bool = False,
        generator: torch.Generator | int | None = None,
    ):
        super().__init__()
        if gate_mode not in GATE_MODES:
            raise ConfigError(f"unknown gate_mode {gate_mode!r}; valid: {', '.join(GATE_MODES)}")
        if dense and gate_mode != "gd":
            raise ConfigError(f"dense mixing needs gate_mode 'gd', got {gate_mode!r}")
        expected = expert_context_dim(context_dim, experts.n_experts, split_context)
        if experts.context_dim != expected:
            raise ConfigError(
                f"the expert bank reads contexts of size {experts.context_dim}, but context_dim "
                f"{context_dim} with split_context={split_context} gives {expected}"
            )
        self.experts = experts
        self.context_dim = context_dim
        self.split_context = split_context
        self.gate_mode = gate_mode
        self.dense = dense
        self.last_nfe = 0
        gate = fan_in_uniform(
            (context_dim + 1, experts.n_experts), context_dim + 1, as_generator(generator)
        )
        if gate_mode == "refit":
            self.register_buffer("gate", gate)
        else:
            self.gate = nn.Parameter(gate, requires_grad=gate_mode == "gd")

    @property
    def n_experts(self) -> int:
        return self.experts.n_experts

    @torch.no_grad()
    def set_gate(self, weight: Tensor) -> None:
        """Overwrite the gate W [(d_ξ+1), K] in place (the refit step)."""
        self.gate.copy_(weight)

    def gate_logits(self, contexts: Tensor) -> Tensor:
        """[ξ; 1] W for contexts [E, d_ξ]: [E, K], differentiable (the ``gd`` gate)."""
        return gate_logits(self.gate, contexts)

    def gate_probs(self, contexts: Tensor) -> Tensor:
        return torch.softmax(self.gate_logits(contexts), dim=-1)

    def route(self, contexts: Tensor) -> Tensor:
        """Each environment's expert k*(e) [E]: argmax of the logits, ties to the lowest k."""
        with torch.no_grad():
            return self.gate_logits(contexts).argmax(dim=-1)

    def load_balancing_loss(self, contexts: Tensor) -> Tensor:
        """Switch-style K Σ_k f_k P_k; f_k (fraction routed to k) carries no gradient."""
        probs = self.gate_probs(contexts)
        fraction = F.one_hot(self.route(contexts), self.n_experts).to(probs.dtype).mean(dim=0)
        return self.n_experts * (fraction * probs.mean(dim=0)).sum()

    def expert_contexts(self, contexts: Tensor, expert_of_env: Tensor) -> Tensor:
        """What each environment's expert reads: chunk k*(e) of ξ_e with split_context."""
        if not self.split_context:
            return contexts
        n_env, chunk = contexts.shape[0], self.context_dim // self.n_experts
        chunks = contexts.view(n_env, self.n_experts, chunk)
        index = expert_of_env.view(n_env, 1, 1).expand(n_env, 1, chunk)
        return chunks.gather(1, index).squeeze(1)

    def vector_field(self, contexts: Tensor) -> VectorField:
        """The mixture's field f(t, x) for a rollout of x [E, N, d].

        Routing and per-environment weights are computed here, once; each call of the returned
        field only runs batched matrix products.
        """
        if self.dense:
            return self._dense_field(contexts)
        expert_of_env = self.route(contexts)
        weights = self.experts.env_weights(
            expert_of_env, self.expert_contexts(contexts, expert_of_env)
        )
        fast = isinstance(weights, RoutedMLP)  # fixed-step rollouts use its reverse pass
        if self.gate_mode != "gd":
            return VectorField(
                lambda t, x: self.experts.field(weights, x), (weights, None) if fast else None
            )
        routed_prob = self.gate_probs(contexts).gather(1, expert_of_env.unsqueeze(1))
        scale = routed_prob.view(-1, 1, 1)
        return VectorField(
            lambda t, x: scale * self.experts.field(weights, x),
            (weights, routed_prob.view(-1)) if fast else None,
        )

    def forward(self, contexts: Tensor, x: Tensor) -> Tensor:
        """One evaluation of the mixture's field: x [E, N, d] -> [E, N, d]."""
        return self.vector_field(contexts)(x.new_zeros(()), x)

    def trajectories(self, contexts: Tensor, x0: Tensor, t: Tensor, **unroll) -> Tensor:
        """Trajectories [E, N, T, d] of the mixture from x0 [E, N, d] on grids t [E, T].

        ``unroll`` are the keywords of ``Expert.unroll``: ODE banks integrate the routed field
        (solver options go to ``rollout``; ``data`` and ``alpha`` are ignored). Discrete-time
        banks iterate their map; with ``alpha < 1`` they are teacher-forced by ``data``
        [E, N, T, d], α = 1 is free running. The number of field/map evaluations is left in
        ``self.last_nfe``.
        """
        field = self.vector_field(contexts)
        out = self.experts.unroll(field, x0, t, **unroll)
        self.last_nfe = field.nfe
        return out

    # --- all K experts on all E environments, as one K·E batch (row k·E + e) ---

    def tile_for_experts(self, tensor: Tensor) -> Tensor:
        """Repeat an [E, ...] tensor K times along dim 0 to match ``all_experts_field``."""
        return tensor.repeat(self.n_experts, *([1] * (tensor.dim() - 1)))

    def all_experts_field(self, contexts: Tensor) -> VectorField:
        """Field over the K·E batch: row k·E + e is expert k on environment e (no gate)."""
        n_env = contexts.shape[0]
        expert_ids = torch.arange(self.n_experts, device=contexts.device).repeat_interleave(n_env)
        tiled = self.tile_for_experts(contexts)
        weights = self.experts.env_weights(expert_ids, self.expert_contexts(tiled, expert_ids))
        fast = (weights, None) if isinstance(weights, RoutedMLP) else None
        return VectorField(lambda t, x: self.experts.field(weights, x), fast)

    def _dense_field(self, contexts: Tensor) -> VectorField:
        n_env, n_experts = contexts.shape[0], self.n_experts
        all_experts = self.all_experts_field(contexts)
        probs = self.gate_probs(contexts).T.reshape(n_experts, n_env, 1, 1)

        def mixed(t: Tensor, x: Tensor) -> Tensor:
            out = all_experts(t, self.tile_for_experts(x))
            return (probs * out.view(n_experts, n_env, *x.shape[1:])).sum(dim=0)

        return VectorField(mixed)

    def expert_losses(
        self,
        contexts: Tensor,
        x0: Tensor,
        t: Tensor,
        target: Tensor,
        alpha: float = 1.0,
        **solver,
    ) -> Tensor:
        """Loss matrix [E, K]: MSE of expert k's trajectories of environment e against target.

        One unroll of the K·E batch, without gradients (for the gate refit). x0 [E, N, d],
        t [E, T], target [E, N, T, d]; ``solver`` is passed to the ODE rollout, ``alpha`` is
        the teacher forcing of a discrete-time bank (forced by ``target``).
        """
        with torch.no_grad():
            field = self.all_experts_field(contexts)
            tiled = self.tile_for_experts(target)
            pred = self.experts.unroll(
                field,
                self.tile_for_experts(x0),
                self.tile_for_experts(t),
                data=tiled,
                alpha=alpha,
                **solver,
            )
            error = (pred - tiled).square().mean(dim=(1, 2, 3))
        return error.view(self.n_experts, -1).T
