"""NCF-style backbone: the context enters the vector field as an input, by concatenation.

Per expert: a context tower (d_ξ -> width -> width), a state tower (d -> width -> width) and a
main MLP (2·width -> width × depth -> d) on the concatenation [state tower; context tower].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mixer.models.activations import act_and_slope
from mixer.models.expert import Expert, Layer, StackedLayers, apply_layers, register_backbone


@dataclass
class NCFWeights:
    state_tower: list[Layer]
    first_state: Tensor  # [E, width, width]: the main MLP's first weight, state columns
    first_bias: Tensor  # [E, width]: its bias plus the (constant) context contribution
    rest: list[Layer]  # the main MLP's remaining layers


@register_backbone()
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


def taylor_field(bank: NCFExpert, first_bias: Tensor, tangent_bias: Tensor):
    """x -> f(x; ξ_j) + J_ξ f(x; ξ_j) δ for a one-expert bank (the NCF learner), with the
    tangent propagated by hand (forward mode).

    The context enters only the first main layer's bias ``first_bias`` [E, width], whose
    tangent ``tangent_bias`` [E, width] is given; from there tangent_{l+1} = act'(pre_l) ⊙
    (W_l tangent_l). Every environment has the same weights but that bias, so each layer is
    ONE product over all E·N rows, primal and tangent rows stacked: no per-environment copies
    of the weights (whose reverse pass formed a per-environment weight gradient at every
    evaluation).
    """
    if bank.n_experts != 1:
        raise ValueError(f"taylor_field needs a one-expert bank, got {bank.n_experts} experts")
    name = bank.activation

    def expert_0(stack, start=0):  # (W^T, b) per layer
        pairs = zip(stack.weights[start:], stack.biases[start:], strict=True)
        return [(w[0].T, b[0]) for w, b in pairs]

    tower, rest = expert_0(bank.state_tower), expert_0(bank.main, start=1)
    first_state = bank.main.weights[0][0][:, : bank.width].T
    rows: dict[int, tuple[Tensor, Tensor]] = {}  # per N: first bias and its tangent per row

    def field(t, x: Tensor) -> Tensor:
        n_env, n_rows = x.shape[:2]
        if n_rows not in rows:
            rows[n_rows] = tuple(
                v.repeat_interleave(n_rows, dim=0) for v in (first_bias, tangent_bias)
            )
        bias_rows, tangent_rows = rows[n_rows]
        h = x.reshape(n_env * n_rows, -1)
        for w_t, b in tower:
            h = bank.act(torch.addmm(b, h, w_t))
        h, slope = act_and_slope(name, torch.addmm(bias_rows, h, first_state))
        tangent = slope * tangent_rows
        n_all, last = h.shape[0], len(rest) - 1
        for i, (w_t, b) in enumerate(rest):
            both = torch.cat([h, tangent]) @ w_t  # [2·E·N, out]: primal rows, then tangent rows
            pre, tangent = both[:n_all] + b, both[n_all:]
            if i < last:
                h, slope = act_and_slope(name, pre)
                tangent = slope * tangent
            else:
                h = pre
        return (h + tangent).view(n_env, n_rows, -1)

    return field
