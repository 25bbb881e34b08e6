"""CoDA-style backbone: a linear hypernetwork over the flattened parameters of a root MLP.

Expert k owns root parameters θ_k ∈ R^{d_θ} and a bias-free map H_k: R^{d_ξ} -> R^{d_θ};
environment e routed to k gets θ_e = θ_k + H_k ξ_e. The flat layout is, layer by layer, the
weight [out, in] row-major followed by the bias [out].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixer.models.expert import (
    Expert,
    Layer,
    fan_in_uniform,
    mlp_sizes,
    register_backbone,
)
from mixer.models.grouped import Layer as RoutedLayer
from mixer.models.grouped import (
    RoutedMLP,
    Routing,
    pad_last,
    padded,
    per_env_layer,
)
from mixer.models.grouped_grads import field_function


@register_backbone()
class CoDAExpert(Expert):
    name = "coda"
    # Per-environment θ_e up to 2^20 numbers per layer (grouped.per_env_layer): the stacked
    # product has 1 + d_ξ times the arithmetic. Measured (model step, one thread; issue 14):
    # 9 environments, width 64 14.3-14.5 ms against 21.6-22.3 stacked, width 224 (450k)
    # 54.3-58.1 against 84.3-84.4, K = 3 width 256 (590k) 68.9 against 112.5; 40
    # environments, width 64 (164k) 34.0 against 60.1, width 256 (2.6M) 517.5 against 427.4.
    per_env_max = 2**20

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

    def env_weights(self, expert_of_env: Tensor, contexts: Tensor) -> RoutedMLP:
        """θ_e = θ_k + H_k ξ_e applied without forming θ_e's weight matrices.

        A wide layer is one product of the rows of expert k with [W_k; H_k,1; ...; H_k,d_ξ]
        stacked, then y = W_k x + Σ_c ξ_e,c H_k,c x + b_e; a thin or small layer uses its
        per-environment slice of θ_e, which is cheaper (``per_env_max``).
        """
        self.check_inputs(expert_of_env, contexts)
        routing = Routing(expert_of_env, self.n_experts)
        experts = routing.sorted_experts
        xi = contexts.index_select(0, routing.order)  # [E, d_ξ], sorted by expert
        n_ctx, layers, offset = self.context_dim, [], 0
        last = len(self.layer_shapes) - 1
        for i, (fan_out, fan_in) in enumerate(self.layer_shapes):
            out_p, in_p = padded(fan_out), padded(fan_in)
            size = fan_out * fan_in
            w_part = slice(offset, offset + size)
            b_part = slice(offset + size, offset + size + fan_out)
            offset += size + fan_out
            bias = torch.baddbmm(
                self.theta[:, b_part].index_select(0, experts).unsqueeze(1),
                xi.unsqueeze(1),
                self.hyper[:, :, b_part].index_select(0, experts),
            ).squeeze(1)
            bias = pad_last(bias, out_p)
            if per_env_layer(len(experts), fan_in, fan_out, self.per_env_max):
                w_e = torch.baddbmm(
                    self.theta[:, w_part].index_select(0, experts).unsqueeze(1),
                    xi.unsqueeze(1),
                    self.hyper[:, :, w_part].index_select(0, experts),
                ).view(-1, fan_out, fan_in)
                weight = F.pad(w_e, (0, in_p - fan_in, 0, out_p - fan_out)).transpose(1, 2)
                layers.append(RoutedLayer("env", weight, bias, act=i < last))
                continue
            maps = torch.cat(
                [self.theta[:, w_part].unsqueeze(1), self.hyper[:, :, w_part]], dim=1
            ).view(self.n_experts, 1 + n_ctx, fan_out, fan_in)  # [K, 1 + d_ξ, out, in]
            maps = F.pad(maps, (0, in_p - fan_in, 0, out_p - fan_out))
            stacked = maps.flatten(1, 2).transpose(1, 2).contiguous()  # [K, in_p, (1+d_ξ)out_p]
            layers.append(RoutedLayer("coda", stacked, bias, act=i < last, context=xi))
        return RoutedMLP(routing, layers, self.activation, self.act, self.state_dim)

    def dense_layers(self, expert_of_env: Tensor, contexts: Tensor) -> list[Layer]:
        """Every environment's materialised (W_e, b_e) (tests and references only)."""
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

    def field(self, weights: RoutedMLP, x: Tensor) -> Tensor:
        return field_function(weights, x)
