"""Slow per-environment reference of the batched expert banks, for tests only.

Each environment's weights are rebuilt separately from the stacked parameters, following the
backbone's defining formula literally (no gathering, no batching, no folding), so that tests
can check the batched path against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixer.models.base import Expert
from mixer.models.coda import CoDAExpert
from mixer.models.geps import GEPSExpert
from mixer.models.ncf import NCFExpert


def _mlp(layers: list[tuple[Tensor, Tensor]], h: Tensor, act, act_last: bool = False) -> Tensor:
    for i, (w, b) in enumerate(layers):
        h = F.linear(h, w, b)
        if act_last or i < len(layers) - 1:
            h = act(h)
    return h


def _stacked(stack, k: int) -> list[tuple[Tensor, Tensor]]:
    return [(w[k], b[k]) for w, b in zip(stack.weights, stack.biases, strict=True)]


def env_layers(backbone: Expert, k: int, xi: Tensor) -> list[tuple[Tensor, Tensor]]:
    """The root-MLP layers (W [out, in], b [out]) of one environment, for CoDA and GEPS."""
    if isinstance(backbone, CoDAExpert):
        theta = backbone.theta[k] + backbone.hyper[k].T @ xi  # θ_k + H_k ξ
        layers, offset = [], 0
        for fan_out, fan_in in backbone.layer_shapes:
            w = theta[offset : offset + fan_out * fan_in].reshape(fan_out, fan_in)
            offset += fan_out * fan_in
            layers.append((w, theta[offset : offset + fan_out]))
            offset += fan_out
        return layers
    if isinstance(backbone, GEPSExpert):
        layers = []
        for i, (w, b) in enumerate(_stacked(backbone.base, k)):
            left, right = backbone.left[i][k], backbone.right[i][k]
            w_e = w + left @ torch.diag(xi) @ right  # W_k + A_k diag(ξ) B_k
            layers.append((w_e, b + backbone.bias_left[i][k] @ xi))
        return layers
    raise TypeError(f"{type(backbone).__name__} has no root-MLP layers")


def env_field(backbone: Expert, k: int, xi: Tensor, x: Tensor) -> Tensor:
    """f_k(x; ξ) for one environment, x [N, d] -> [N, d]."""
    if isinstance(backbone, NCFExpert):
        context = _mlp(_stacked(backbone.context_tower, k), xi, backbone.act, act_last=True)
        state = _mlp(_stacked(backbone.state_tower, k), x, backbone.act, act_last=True)
        joined = torch.cat([state, context.expand(len(x), -1)], dim=1)
        return _mlp(_stacked(backbone.main, k), joined, backbone.act)
    return _mlp(env_layers(backbone, k, xi), x, backbone.act)


def per_env_reference(
    backbone: Expert, expert_of_env: Tensor, contexts: Tensor, x: Tensor
) -> Tensor:
    """The batched ``backbone(expert_of_env, contexts, x)`` computed one environment at a time."""
    return torch.stack(
        [
            env_field(backbone, int(k), xi, x_e)
            for k, xi, x_e in zip(expert_of_env, contexts, x, strict=True)
        ]
    )
