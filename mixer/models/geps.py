"""GEPS-style backbone: a context-scaled low-rank modulation of every layer of a root MLP.

For each layer of expert k and environment e routed to it (rank r = d_ξ):
W_e = W_k + A_k diag(ξ_e) B_k and b_e = b_k + A_b,k ξ_e, with A_k [out, r], B_k [r, in] and
A_b,k [out, r].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixer.models.expert import (
    Expert,
    Layer,
    StackedLayers,
    fan_in_uniform,
    mlp_sizes,
    register_backbone,
)
from mixer.models.grouped import (
    Layer as RoutedLayer,
)
from mixer.models.grouped import (
    RoutedMLP,
    Routing,
    pad_last,
    padded,
    per_env_layer,
)
from mixer.models.grouped_grads import field_function


@register_backbone()
class GEPSExpert(Expert):
    name = "geps"
    # Per-environment weights up to 2^18 numbers per layer (grouped.per_env_layer). Measured
    # (one thread; issue 14): LV, 9 environments, K = 3: at width 64 (37k) a context step took
    # 15.0-16.0 ms against 21.0-22.3 grouped, a model step 14.3-15.3 against 23.2-23.6; at
    # width 256 (590k) 65.7-72.3 against 54.3-54.8, i.e. grouped wins there. bench_cost's
    # training step (width 64, medians of interleaved steps): 40 environments (164k),
    # per-environment / grouped 0.89 at K = 3, 0.82 at K = 10, 0.72-0.79 at K = 20; 160
    # environments (655k), K = 10: 1.14, grouped wins.
    per_env_max = 2**18

    def build(self, gen: torch.Generator | None, *, modulation_init_scale: float = 1e-2) -> None:
        n_experts, rank = self.n_experts, self.context_dim
        sizes = mlp_sizes(self.state_dim, self.width, self.depth, self.state_dim)
        self.base = StackedLayers(sizes, n_experts, gen)
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

    def env_weights(self, expert_of_env: Tensor, contexts: Tensor) -> RoutedMLP:
        """The routed experts' factorised layers, rows grouped by expert (no W_e formed).

        Per layer y = W_k x + A_k (ξ_e ⊙ B_k x) + b_k + A_b,k ξ_e, with W_k and B_k stacked
        into one product and A_k diag(ξ_e) (a [out, r] matrix) applied per environment. Thin
        or small layers use their per-environment weights instead (``per_env_max``).
        """
        self.check_inputs(expert_of_env, contexts)
        routing = Routing(expert_of_env, self.n_experts)
        experts = routing.sorted_experts
        xi = contexts.index_select(0, routing.order)  # [E, r], sorted by expert
        rank, rank_p = self.context_dim, padded(self.context_dim)
        layers = []
        last = len(self.left) - 1
        for i, (w, b, left, right, bias_left) in enumerate(
            zip(
                self.base.weights,
                self.base.biases,
                self.left,
                self.right,
                self.bias_left,
                strict=True,
            )
        ):
            fan_out, fan_in = w.shape[1:]
            out_p, in_p = padded(fan_out), padded(fan_in)
            left_e = left.index_select(0, experts) * xi.unsqueeze(1)  # A_k diag(ξ_e) [E, out, r]
            bias = b.index_select(0, experts) + torch.bmm(
                bias_left.index_select(0, experts), xi.unsqueeze(2)
            ).squeeze(2)
            bias = pad_last(bias, out_p)
            if per_env_layer(len(experts), fan_in, fan_out, self.per_env_max):
                w_e = torch.baddbmm(
                    w.index_select(0, experts), left_e, right.index_select(0, experts)
                )
                weight = F.pad(w_e, (0, in_p - fan_in, 0, out_p - fan_out)).transpose(1, 2)
                layers.append(RoutedLayer("env", weight, bias, act=i < last))
                continue
            stacked = torch.cat(
                [
                    F.pad(w, (0, in_p - fan_in, 0, out_p - fan_out)),
                    F.pad(right, (0, in_p - fan_in, 0, rank_p - rank)),
                ],
                dim=1,
            )  # [K, out_p + r_p, in_p]
            context = F.pad(left_e, (0, rank_p - rank, 0, out_p - fan_out)).transpose(1, 2)
            layers.append(
                RoutedLayer(
                    "geps",
                    stacked.transpose(1, 2).contiguous(),
                    bias,
                    act=i < last,
                    context=context.contiguous(),
                )
            )
        return RoutedMLP(routing, layers, self.activation, self.act, self.state_dim)

    def field(self, weights: RoutedMLP, x: Tensor) -> Tensor:
        return field_function(weights, x)

    def dense_layers(self, expert_of_env: Tensor, contexts: Tensor) -> list[Layer]:
        """Every environment's materialised W_e, b_e (tests and references only)."""
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
