"""NCF-style backbone: the context enters the vector field as an input, by concatenation.

Per expert: a context tower (d_ξ -> width -> width), a state tower (d -> width -> width) and a
main MLP (2·width -> width × depth -> d) on the concatenation [state tower; context tower].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mixer.models.base import Expert, Layer, StackedLayers, apply_layers


@dataclass
class NCFWeights:
    state_tower: list[Layer]
    first_state: Tensor  # [E, width, width]: the main MLP's first weight, state columns
    first_bias: Tensor  # [E, width]: its bias plus the (constant) context contribution
    rest: list[Layer]  # the main MLP's remaining layers


class NCFExpert(Expert):
    name = "ncf"

    def build(self, gen: torch.Generator | None) -> None:
        n_experts, width = self.n_experts, self.width
        self.context_tower = StackedLayers([self.context_dim, width, width], n_experts, gen)
        self.state_tower = StackedLayers([self.state_dim, width, width], n_experts, gen)
        main = [2 * width, *([width] * self.depth), self.state_dim]
        self.main = StackedLayers(main, n_experts, gen)

    def env_weights(self, expert_of_env: Tensor, contexts: Tensor) -> NCFWeights:
        self.check_inputs(expert_of_env, contexts)
        # The context tower's output is constant along a trajectory, so its part of the first
        # main layer, W1[:, :, width:] @ c_e, is folded into that layer's bias here, once,
        # instead of concatenating it to the state at every vector-field evaluation.
        context_emb = apply_layers(
            self.context_tower.gather(expert_of_env), contexts.unsqueeze(1), self.act, True
        )  # [E, 1, width]
        (w1, b1), *rest = self.main.gather(expert_of_env)
        w_state, w_context = w1[:, :, : self.width], w1[:, :, self.width :]
        first_bias = b1 + torch.bmm(context_emb, w_context.transpose(1, 2)).squeeze(1)
        return NCFWeights(self.state_tower.gather(expert_of_env), w_state, first_bias, rest)

    def field(self, weights: NCFWeights, x: Tensor) -> Tensor:
        h = apply_layers(weights.state_tower, x, self.act, act_last=True)
        h = self.act(torch.baddbmm(weights.first_bias.unsqueeze(1), h, weights.first_state.mT))
        return apply_layers(weights.rest, h, self.act)
