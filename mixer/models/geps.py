"""GEPS-style backbone: a context-scaled low-rank modulation of every layer of a root MLP.

For each layer of expert k and environment e routed to it (rank r = d_ξ):
W_e = W_k + A_k diag(ξ_e) B_k and b_e = b_k + A_b,k ξ_e, with A_k [out, r], B_k [r, in] and
A_b,k [out, r].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixer.models.base import (
    Expert,
    Layer,
    StackedLayers,
    apply_layers,
    as_generator,
    fan_in_uniform,
    mlp_sizes,
)


class GEPSExpert(Expert):
    name = "geps"

    def __init__(
        self,
        state_dim: int,
        context_dim: int,
        n_experts: int,
        width: int = 64,
        depth: int = 3,
        activation: str = "silu",
        generator: torch.Generator | int | None = None,
        modulation_init_scale: float = 1e-2,
    ):
        super().__init__(state_dim, context_dim, n_experts, width, depth, activation, generator)
        gen = as_generator(generator)
        rank = context_dim
        self.base = StackedLayers(mlp_sizes(state_dim, width, depth, state_dim), n_experts, gen)
        self.left = nn.ParameterList()  # A_k per layer, [K, out, r]
        self.right = nn.ParameterList()  # B_k per layer, [K, r, in]
        self.bias_left = nn.ParameterList()  # A_b,k per layer, [K, out, r]
        # A and B are both non-zero: with ξ initialised at 0 the gradient on ξ_c is
        # <dL/dW, A[:, c] B[c, :]>, which would vanish if either factor started at 0. A (and
        # A_b) are scaled down so that small contexts only perturb the root network.
        for fan_in, fan_out in zip(self.base.sizes[:-1], self.base.sizes[1:], strict=True):
            small = modulation_init_scale
            left = fan_in_uniform((n_experts, fan_out, rank), rank, gen, small)
            right = fan_in_uniform((n_experts, rank, fan_in), fan_in, gen)
            bias_left = fan_in_uniform((n_experts, fan_out, rank), rank, gen, small)
            self.left.append(nn.Parameter(left))
            self.right.append(nn.Parameter(right))
            self.bias_left.append(nn.Parameter(bias_left))

    def env_weights(self, expert_of_env: Tensor, contexts: Tensor) -> list[Layer]:
        self.check_inputs(expert_of_env, contexts)
        layers = []
        xi_row = contexts.unsqueeze(1)  # [E, 1, r]: scales A's columns, i.e. A diag(ξ)
        xi_col = contexts.unsqueeze(2)  # [E, r, 1]
        for (w, b), left, right, bias_left in zip(
            self.base.gather(expert_of_env), self.left, self.right, self.bias_left, strict=True
        ):
            left_e = left.index_select(0, expert_of_env) * xi_row
            w_e = torch.baddbmm(w, left_e, right.index_select(0, expert_of_env))
            b_e = b + torch.bmm(bias_left.index_select(0, expert_of_env), xi_col).squeeze(2)
            layers.append((w_e, b_e))
        return layers

    def field(self, weights: list[Layer], x: Tensor) -> Tensor:
        return apply_layers(weights, x, self.act)
