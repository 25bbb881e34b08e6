"""CoDA-style backbone: a linear hypernetwork over the flattened parameters of a root MLP.

Expert k owns root parameters θ_k ∈ R^{d_θ} and a bias-free map H_k: R^{d_ξ} -> R^{d_θ};
environment e routed to k gets θ_e = θ_k + H_k ξ_e. The flat layout is, layer by layer, the
weight [out, in] row-major followed by the bias [out].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixer.models.base import Expert, Layer, apply_layers, fan_in_uniform, mlp_sizes


class CoDAExpert(Expert):
    name = "coda"

    def build(self, gen: torch.Generator | None, *, hyper_init_scale: float = 1e-2) -> None:
        n_experts, context_dim = self.n_experts, self.context_dim
        sizes = mlp_sizes(self.state_dim, self.width, self.depth, self.state_dim)
        self.layer_shapes = list(zip(sizes[1:], sizes[:-1], strict=True))  # (out, in)
        chunks = []
        for fan_out, fan_in in self.layer_shapes:
            chunks.append(fan_in_uniform((n_experts, fan_out * fan_in), fan_in, gen))
            chunks.append(fan_in_uniform((n_experts, fan_out), fan_in, gen))
        self.theta = nn.Parameter(torch.cat(chunks, dim=1))  # [K, d_θ]
        self.n_root_params = self.theta.shape[1]
        # Small but not zero: with ξ initialised at 0, H = 0 would make dθ/dξ = 0 and the
        # contexts would never move; the scale keeps ξ = 0 close to the root network anyway.
        self.hyper = nn.Parameter(
            fan_in_uniform(
                (n_experts, context_dim, self.n_root_params), context_dim, gen, hyper_init_scale
            )
        )  # H stored transposed, [K, d_ξ, d_θ], so that θ_e = θ_k + ξ_e @ H_k is one bmm

    def env_weights(self, expert_of_env: Tensor, contexts: Tensor) -> list[Layer]:
        self.check_inputs(expert_of_env, contexts)
        theta = self.theta.index_select(0, expert_of_env)  # [E, d_θ]
        hyper = self.hyper.index_select(0, expert_of_env)  # [E, d_ξ, d_θ]
        theta = torch.baddbmm(theta.unsqueeze(1), contexts.unsqueeze(1), hyper).squeeze(1)
        return self.unflatten(theta)

    def unflatten(self, theta: Tensor) -> list[Layer]:
        """[E, d_θ] -> per-layer (W [E, out, in], b [E, out]); views, no copies."""
        n_env = theta.shape[0]
        sizes = [n for fan_out, fan_in in self.layer_shapes for n in (fan_out * fan_in, fan_out)]
        parts = torch.split(theta, sizes, dim=1)
        return [
            (parts[2 * i].view(n_env, fan_out, fan_in), parts[2 * i + 1])
            for i, (fan_out, fan_in) in enumerate(self.layer_shapes)
        ]

    def field(self, weights: list[Layer], x: Tensor) -> Tensor:
        return apply_layers(weights, x, self.act)
