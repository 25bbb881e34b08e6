"""Slow per-environment reference of the batched expert banks, for tests only.

Each environment's weights are rebuilt separately from the stacked parameters, following the
backbone's defining formula literally (no gathering, no batching, no folding), so that tests
can check the batched path against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixer.models.coda import CoDAExpert
from mixer.models.expert import Expert
from mixer.models.geps import GEPSExpert
from mixer.models.ncf import NCFExpert
from mixer.models.plrnn import PLRNNExpert


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


def plrnn_env_params(bank: PLRNNExpert, k: int, xi: Tensor) -> dict[str, Tensor]:
    """One environment's PL-RNN (A as a diagonal matrix), read from θ_k + H_k ξ by offsets."""
    theta = bank.theta[k] + bank.hyper[k].T @ xi
    m, h = bank.latent_dim, bank.width
    names_shapes = (("A", (m,)), ("W1", (m, h)), ("h1", (m,)), ("W2", (h, m)), ("h2", (h,)))
    params, offset = {}, 0
    for name, shape in names_shapes:
        size = int(torch.tensor(shape).prod())
        params[name] = theta[offset : offset + size].reshape(shape)
        offset += size
    params["A"] = torch.diag(params["A"])
    return params


def plrnn_env_trajectory(bank: PLRNNExpert, k: int, xi: Tensor, x: Tensor, alpha: float) -> Tensor:
    """One environment's PL-RNN unrolled literally, one series and one time step at a time.

    x [N, T, d] is the data; returns [N, T, d] with slot 0 = x_0 and slot t + 1 the
    observation after the step from the teacher-forced state at t.
    """
    p = plrnn_env_params(bank, k, xi)
    n_series, n_times, d = x.shape
    out = torch.zeros_like(x)
    for n in range(n_series):
        z = torch.zeros(bank.latent_dim, dtype=x.dtype)
        z[:d] = x[n, 0]
        out[n, 0] = x[n, 0]
        for t in range(n_times - 1):
            forced = z.clone()
            forced[:d] = x[n, t]  # x̂_t: observed components replaced by the data
            z_tilde = alpha * z + (1 - alpha) * forced
            z = p["A"] @ z_tilde + p["W1"] @ torch.relu(p["W2"] @ z_tilde + p["h2"]) + p["h1"]
            out[n, t + 1] = z[:d]
    return out


def env_field(backbone: Expert, k: int, xi: Tensor, x: Tensor) -> Tensor:
    """f_k(x; ξ) for one environment, x [N, d] -> [N, d] (the one-step map for a PL-RNN)."""
    if isinstance(backbone, PLRNNExpert):
        p = plrnn_env_params(backbone, k, xi)
        return x @ p["A"].T + torch.relu(x @ p["W2"].T + p["h2"]) @ p["W1"].T + p["h1"]
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
