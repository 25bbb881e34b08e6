"""A single MLP shared by every environment, with a per-environment input folded into a bias.

Used by CAVIA (the context φ_e is an extra input of the field): the weights are the same for
all rows, so every layer is ONE matrix product over all E·N rows (not a batch of E copies of
the weights, whose backward formed a per-environment weight gradient), and φ's part of the
first layer becomes a per-environment bias, computed once per rollout. Plain differentiable
operations: CAVIA's second-order meta-gradient goes through them with an adaptive solver; with a
fixed-step one CAVIA trains on :mod:`mixer.models.integrate.sensitivity` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mixer.models.expert import StackedLayers


def shared_mlp_field(
    stack: StackedLayers, phi: Tensor, state_dim: int, act: Callable[[Tensor], Tensor]
):
    """f(x) = MLP([x, φ_e]) for x [E, N, state_dim], φ [E, d_φ]; ``stack`` holds K = 1."""
    weights = [w[0] for w in stack.weights]
    biases = [b[0] for b in stack.biases]
    w1 = weights[0]
    first_bias = biases[0] + phi @ w1[:, state_dim:].T  # [E, width]
    w_state = w1[:, :state_dim].T
    rest = [(w.T, b) for w, b in zip(weights[1:], biases[1:], strict=True)]
    last = len(rest) - 1
    row_bias: dict[int, Tensor] = {}  # per number of rows N: [E·N, width], built once

    def field(t, x: Tensor) -> Tensor:
        # Rows stay 2-D ([E·N, width]) through the layers: every op is one node of the
        # (double) reverse pass, so views and broadcast adds per evaluation are avoided.
        n_env, n_rows = x.shape[:2]
        if n_rows not in row_bias:
            row_bias[n_rows] = first_bias.repeat_interleave(n_rows, dim=0)
        h = act(torch.addmm(row_bias[n_rows], x.reshape(n_env * n_rows, -1), w_state))
        for i, (w_t, b) in enumerate(rest):
            h = torch.addmm(b, h, w_t)
            if i < last:
                h = act(h)
        return h.view(n_env, n_rows, -1)

    return field
