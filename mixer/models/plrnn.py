"""Hierarchical shallow PL-RNN: a discrete-time expert bank (docs/METHOD.md §2, ``plrnn``).

Expert k owns root parameters θ_k and a bias-free map H_k; environment e routed to k gets
θ_e = θ_k + H_k ξ_e (a linear hypernetwork, as CoDA) over the parameters of the map

    z_{t+1} = A z̃_t + W1 relu(W2 z̃_t + h2) + h1,      A diagonal,

on a latent state z ∈ R^M (M = ``latent_dim`` ≥ d) whose first d components are the
observation. ``field(weights, z)`` is that one-step map; there is no time derivative.

Generalised teacher forcing (training): before every step the observed components are pulled
towards the data, z̃_t = α z_t + (1 − α) x̂_t, where x̂_t is z_t with its first d components
replaced by x_t (the unobserved components keep z_t). The output of step t → t+1 is scored
against x_{t+1}: the data x_t enters only the input of that step, never its target (the
reference code scored the output at t against x_t, docs/METHOD.md §6 defect 9). α = 1 is the
free-running model; α = 0 is one-step-ahead prediction.

Latent initialisation: observed components = x_0, the M − d others = 0.

The flat parameter layout of θ (per expert) is [A (M), W1 (M×H row-major), h1 (M),
W2 (H×M row-major), h2 (H)] with H = ``width``; ``depth`` is ignored (the PL-RNN is shallow:
one hidden layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixer.errors import ConfigError
from mixer.models.expert import Expert, fan_in_uniform, register_backbone
from mixer.models.integrate.rollout import FieldFn


class PLRNNWeights:
    """Every environment's materialised PL-RNN: a [E, M], W1 [E, M, H], h1, W2 [E, H, M], h2.

    The shapes the step uses (row vectors, transposed matrices) are views taken once here, not
    at every step, which keeps the autograd graph of a long unroll small.
    """

    def __init__(self, a: Tensor, w1: Tensor, h1: Tensor, w2: Tensor, h2: Tensor):
        self.a, self.w1, self.h1, self.w2, self.h2 = a, w1, h1, w2, h2
        self.a_row, self.h1_row, self.h2_row = a.unsqueeze(1), h1.unsqueeze(1), h2.unsqueeze(1)
        self.w1_t, self.w2_t = w1.transpose(1, 2), w2.transpose(1, 2)


@register_backbone()
class PLRNNExpert(Expert):
    name = "plrnn"
    discrete_time = True
    hyperparameters = {
        "latent_dim": {
            "description": (
                "Latent size M of the PL-RNN, at least the data dimension d (its first d "
                "components are the observation; the others start at 0). null uses max(d, 16)."
            ),
            "type": ["integer", "null"],
            "minimum": 1,
            "default": None,
        },
        "tf_alpha": {
            "description": (
                "Generalised teacher forcing z~_t = alpha z_t + (1 - alpha) x^_t at the first "
                "outer step: 0 replaces the observed latent components by the data before every "
                "step (one-step-ahead training), 1 runs free. The output of step t -> t+1 is "
                "always scored against x_{t+1}. Adaptation, the gate refit's loss matrix and the "
                "teacher-forced score `loss_tf` use the final alpha; predictions (mse_id, "
                "mse_ood, `mse_free`) run free."
            ),
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.5,
        },
        "tf_alpha_end": {
            "description": (
                "alpha at the last outer step, reached linearly from tf_alpha (annealing, e.g. "
                "0.2 -> 0.8 to wean the model off the data); null keeps tf_alpha fixed."
            ),
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 1,
            "default": None,
        },
    }

    def __init__(self, *args, depth: int = 1, activation: str = "relu", **kwargs):
        # Shallow by definition (``depth`` is only recorded), and the nonlinearity is the
        # PL-RNN's ReLU: ``activation`` is not used.
        super().__init__(*args, depth=depth, activation="relu", **kwargs)

    def build(
        self,
        gen: torch.Generator | None,
        *,
        latent_dim: int | None = None,
        hyper_init_scale: float = 1e-2,
    ) -> None:
        n_experts, state_dim, context_dim = self.n_experts, self.state_dim, self.context_dim
        latent = max(state_dim, 16) if latent_dim is None else latent_dim
        if latent < state_dim:
            raise ConfigError(
                f"plrnn backbone: latent_dim ({latent}) must be >= the observed dimension "
                f"d = {state_dim} (the first d latent components are the observation)"
            )
        self.latent_dim = latent
        m, h = latent, self.width
        # A near 1 (slow decay: the level of a series persists at init), W1 small so that the
        # initial map stays close to a stable linear one; W2, h2 as nn.Linear would draw them.
        a = 0.9 + 0.1 * torch.rand((n_experts, m), generator=gen)
        w1 = fan_in_uniform((n_experts, m * h), h, gen, scale=0.1)
        h1 = fan_in_uniform((n_experts, m), h, gen, scale=0.1)
        w2 = fan_in_uniform((n_experts, h * m), m, gen)
        h2 = fan_in_uniform((n_experts, h), m, gen)
        self.sizes = [m, m * h, m, h * m, h]
        self.theta = nn.Parameter(torch.cat([a, w1, h1, w2, h2], dim=1))  # [K, d_θ]
        self.n_root_params = self.theta.shape[1]
        # H stored transposed [K, d_ξ, d_θ]; small but not zero, so that dθ/dξ ≠ 0 at ξ = 0.
        self.hyper = nn.Parameter(
            fan_in_uniform(
                (n_experts, context_dim, self.n_root_params), context_dim, gen, hyper_init_scale
            )
        )

    @classmethod
    def options_from_config(cls, cfg: dict) -> dict:
        return {"latent_dim": cfg.get("latent_dim")}

    def env_weights(self, expert_of_env: Tensor, contexts: Tensor) -> PLRNNWeights:
        self.check_inputs(expert_of_env, contexts)
        theta = self.theta.index_select(0, expert_of_env)  # [E, d_θ]
        hyper = self.hyper.index_select(0, expert_of_env)  # [E, d_ξ, d_θ]
        theta = torch.baddbmm(theta.unsqueeze(1), contexts.unsqueeze(1), hyper).squeeze(1)
        return self.unflatten(theta)

    def unflatten(self, theta: Tensor) -> PLRNNWeights:
        """[E, d_θ] -> per-environment (A, W1, h1, W2, h2); views, no copies."""
        n_env, m, h = theta.shape[0], self.latent_dim, self.width
        a, w1, h1, w2, h2 = torch.split(theta, self.sizes, dim=1)
        return PLRNNWeights(a, w1.view(n_env, m, h), h1, w2.view(n_env, h, m), h2)

    def field(self, weights: PLRNNWeights, z: Tensor) -> Tensor:
        """One step of the map, z [E, N, M] -> [E, N, M], with batched matrix products."""
        hidden = F.relu(torch.baddbmm(weights.h2_row, z, weights.w2_t))
        return torch.addcmul(torch.baddbmm(weights.h1_row, hidden, weights.w1_t), weights.a_row, z)

    def iterate(
        self, step: FieldFn, x0: Tensor, t: Tensor, data: Tensor | None, alpha: float
    ) -> Tensor:
        """Iterate ``step`` T − 1 times from x0 [E, N, d]; returns observations [E, N, T, d].

        ``alpha``: one α for every step, or a tensor [T − 1] of one α per step. With α < 1,
        ``data`` [E, N, T, d] forces the observed components before each step
        (generalised teacher forcing); slot 0 of the output is x0 itself, slot s + 1 the
        observation produced from the (forced) state at s. The grid ``t`` only gives T: each
        grid interval is one step, whatever its length.
        """
        n_times, d = t.shape[1], x0.shape[-1]
        per_step = isinstance(alpha, Tensor)
        forcing = bool((alpha < 1.0).any()) if per_step else alpha < 1.0
        if forcing and (data is None or data.shape[2] != n_times):
            raise ValueError("teacher forcing (alpha < 1) needs data [E, N, T, d] on the grid")
        pad = (0, self.latent_dim - d)
        z = F.pad(x0, pad)
        tau = x0.new_zeros(())
        if forcing:
            # z̃ = keep_s ⊙ z + pull_s: keep_s is α_s on the observed components and 1
            # elsewhere, pull_s is (1 − α_s) x_s padded with zeros; one fused op per step.
            keep = torch.ones(n_times - 1, self.latent_dim, dtype=z.dtype, device=z.device)
            observed = F.pad(data[:, :, : n_times - 1], pad)
            if per_step:  # α per step [T − 1], e.g. forced on a history, then free
                steps = alpha.to(z)
                keep[:, :d] = steps[:, None]
                pull = (1.0 - steps).view(1, 1, -1, 1) * observed
            else:
                keep[:, :d] = alpha
                pull = (1.0 - alpha) * observed
        states = []
        for s in range(n_times - 1):
            if forcing:
                z = torch.addcmul(pull[:, :, s], keep[s], z)
            z = step(tau, z)
            states.append(z)
        if not states:
            return x0.unsqueeze(2)
        return torch.cat([x0.unsqueeze(2), torch.stack(states, dim=2)[..., :d]], dim=2)
