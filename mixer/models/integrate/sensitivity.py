"""Fixed-step rollouts of a shared MLP field with its forward sensitivities to the context.

CAVIA's field is f_e(x) = MLP([x, φ_e]) with weights shared by every environment
(:func:`mixer.models.shared.shared_mlp_field`). Its inner gradient ∂L/∂φ_e needs ∂x/∂φ_e, the
forward sensitivities, which obey J' = ∂f/∂x J + ∂f/∂φ (zero at t_0). Integrated with the same
explicit Runge-Kutta steps as the state, they are exactly the derivatives of the discrete
trajectory (an explicit Runge-Kutta step commutes with forward differentiation), so the inner
gradient is a contraction of J with the residual, and the meta-gradient through it is ONE
first-order reverse pass (exact second order), instead of autograd's reverse pass through a
recorded reverse pass.

:func:`sensitivity_rollout` is one autograd node with a hand-written reverse pass: each stage
records what the weight gradients need and every weight gradient is one product over all
evaluations at the end (autograd would accumulate one per evaluation). The state is
[E, 1 + d_φ, N, d]: per environment its N trajectories, then their Jacobian columns
∂x/∂φ_k, so a layer is one product for all of them and each Runge-Kutta combination one
operation; per-environment and per-column terms enter by broadcasting, never by copies.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixer.models.activations import ACTIVATIONS, act_slope_curvature, activation_fn
from mixer.models.expert import StackedLayers
from mixer.models.integrate.rollout import uniform_steps
from mixer.models.integrate.runge_kutta import (
    FixedSteps,
    StageRecords,
    layer_inputs,
    weight_gradient,
)


def sensitivity_rollout(
    stack: StackedLayers,
    phi: Tensor,
    x0: Tensor,
    t: Tensor,
    activation: str,
    jacobian: bool,
    method: str = "rk4",
    substeps: int = 1,
) -> tuple[Tensor, Tensor | None]:
    """Trajectories [E, N, T, d] of f_e(x) = MLP([x, φ_e]) from x0 [E, N, d] on grids t [E, T],
    and with ``jacobian`` their sensitivities ∂x/∂φ_e [E, d_φ, N, T, d] (else None).

    ``stack`` holds one expert whose first layer takes [x, φ]; ``method`` is a fixed-step
    tableau of :data:`~mixer.models.integrate.solvers.TABLEAUS`. Differentiable in the stack's
    parameters and φ (first order; the sensitivities carry the second), not in x0 or t.
    """
    n_env, n_rows, dim = x0.shape
    n_ctx = phi.shape[1] if jacobian else 0
    weights = [w[0] for w in stack.weights]
    biases = [b[0] for b in stack.biases]
    w_state, w_phi = weights[0][:, :dim], weights[0][:, dim:]
    first_bias = biases[0] + phi @ w_phi.T  # [E, width]: φ's part of the first layer
    steps = uniform_steps(t).to(x0.dtype).view(-1, 1, 1, 1)
    state = x0.unsqueeze(1)
    if n_ctx:
        state = torch.cat([state, state.new_zeros(n_env, n_ctx, n_rows, dim)], dim=1)
    tensors = (first_bias, w_phi, w_state, *weights[1:], *biases[1:])
    keep = torch.is_grad_enabled() and any(p.requires_grad for p in tensors)
    options = (activation, method, substeps, t.shape[1], keep)
    traj = _SensitivityRollout.apply(options, state, steps, *tensors)  # [E, 1 + d_φ, N, T, d]
    return traj[:, 0], (traj[:, 1:] if n_ctx else None)


class _SensitivityRollout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, options, state, steps, first_bias, w_phi, w_state, *layers):
        activation, method, substeps, n_times, keep = options
        n_rest = len(layers) // 2
        weights, biases = layers[:n_rest], layers[n_rest:]
        n_env, width = first_bias.shape
        sens = state.shape[1] > 1
        act = activation_fn(activation)
        saves_output = ACTIVATIONS[activation].saves_output
        bias = first_bias.view(n_env, 1, 1, width)
        # A Jacobian column k's first pre-activation has ∂/∂φ_k = W_φ[:, k] as its bias.
        column_bias = w_phi.T.unsqueeze(1)  # [d_φ, 1, width], broadcast over E and N
        # (W^T, bias of the trajectories' rows, bias of the columns' rows) per layer
        layers_t = [(w_state.T, bias, column_bias)]
        layers_t += [(w.T, b, None) for w, b in zip(weights, biases, strict=True)]
        last = len(layers_t) - 1

        def field(y: Tensor):
            """The field of the state's rows; the cache: per layer its input and, for hidden
            layers, what the reverse pass needs (without columns: the pre-activation)."""
            inputs, hidden, h = [], [], y
            for i, (w_t, b, column_b) in enumerate(layers_t):
                inputs.append(h)
                out = torch.matmul(h, w_t)
                if not sens:
                    pre = out + b
                    if i == last:
                        return pre, (inputs, hidden)
                    h = act(pre)
                    hidden.append(h if saves_output else pre)
                    continue
                pre, dpre = out[:, :1] + b, out[:, 1:]
                if column_b is not None:
                    dpre = dpre + column_b
                if i == last:
                    return torch.cat([pre, dpre], dim=1), (inputs, hidden)
                value, slope, curv = act_slope_curvature(activation, pre)
                # Kept: act' for both reverse products, and act'' ⊙ dpre for the columns'
                # dependence on pre (the second-order term of the meta-gradient).
                hidden.append((slope, curv * dpre))
                h = torch.cat([value, slope * dpre], dim=1)
            raise AssertionError("the last layer returns")

        schedule = FixedSteps(method, steps, substeps, n_times)
        states, caches = schedule.forward(field, state, keep)
        ctx.options, ctx.caches, ctx.schedule = options, caches, schedule
        ctx.save_for_backward(w_state, *weights)
        return torch.stack(states, dim=3)

    @staticmethod
    def backward(ctx, grad):
        activation = ctx.options[0]
        caches = ctx.caches
        w_state, *weights = ctx.saved_tensors
        n_layers = len(weights) + 1
        sens = grad.shape[1] > 1
        act_back = ACTIVATIONS[activation].backward
        records = StageRecords(n_layers)

        def field_back(cache, g: Tensor) -> Tensor:
            hidden = cache[1]
            for layer in reversed(range(n_layers)):
                if layer < n_layers - 1:  # g holds dL/d(the activation's output)
                    if sens:
                        slope, curv_dpre = hidden[layer]
                        g_cols = g[:, 1:]
                        # pre moves the columns' slope too: Σ_k g_k ⊙ act''(pre) ⊙ dpre_k
                        g_pre = (g_cols * curv_dpre).sum(dim=1, keepdim=True)
                        g_pre = torch.addcmul(g_pre, g[:, :1], slope)
                        g = torch.cat([g_pre, g_cols * slope], dim=1)
                    else:
                        g = act_back(g, hidden[layer])
                records.add(layer, g)
                g = torch.matmul(g, weights[layer - 1] if layer else w_state)
            return g

        ctx.schedule.backward(field_back, caches, lambda j: grad[..., j, :])

        grads_w, grads_b = [], []
        for layer in range(n_layers):
            g_all = records.stacked(layer)  # [stages, E, 1 + d_φ, N, out]
            grads_w.append(weight_gradient(g_all, layer_inputs(caches, layer)))
            if layer:
                grads_b.append(g_all[:, :, 0].sum(dim=(0, 1, 2)))
            else:
                g_first_bias = g_all[:, :, 0].sum(dim=(0, 2))  # [E, width]
                g_w_phi = g_all[:, :, 1:].sum(dim=(0, 1, 3)).T if sens else None
        return (None, None, None, g_first_bias, g_w_phi, *grads_w, *grads_b)
