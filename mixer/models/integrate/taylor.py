"""NCF's Taylor-corrected rollout (fixed-step) as one autograd node with a hand-written reverse.

The field is :func:`mixer.models.ncf.taylor_field`'s, f(x; ξ_j) + J_ξ f(x; ξ_j) δ, for a
one-expert bank: the context only moves the first main layer's bias, whose value and tangent
per row are given, and the tangent is pushed forward through the main layers by hand. Autograd
would record every evaluation's operations and accumulate each weight gradient once per
evaluation; here each stage records what its weight gradients need and every gradient is one
product over all evaluations at the end. Primal and tangent activations of a main layer are
stacked [2, rows, width] so a layer is one product for both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixer.models.activations import ACTIVATIONS, act_slope_curvature, activation_fn
from mixer.models.integrate.runge_kutta import (
    FixedSteps,
    StageRecords,
    layer_inputs,
    weight_gradient,
)
from mixer.models.ncf import NCFExpert


def taylor_rollout(
    bank: NCFExpert,
    first_bias: Tensor,
    tangent_bias: Tensor,
    x0: Tensor,
    steps: Tensor,
    n_times: int,
    method: str = "rk4",
    substeps: int = 1,
) -> Tensor:
    """Trajectories [B, N, T, d] of the Taylor field from x0 [B, N, d], each row b on the
    uniform grid of step ``steps[b]`` with ``n_times`` points (``uniform_steps`` of its grid).

    ``first_bias``/``tangent_bias`` [B, width]: the first main layer's bias at ξ_j and its
    tangent J_ξ (bias) δ, per row b (differentiable: their gradients flow back to the contexts
    and the context tower). Differentiable in the bank's state tower and main layers too; not
    in x0 or the steps. ``bank`` must hold one expert (the NCF learner's).
    """
    if bank.n_experts != 1:
        raise ValueError(f"taylor_rollout needs a one-expert bank, got {bank.n_experts} experts")
    tower = [
        (w[0], b[0]) for w, b in zip(bank.state_tower.weights, bank.state_tower.biases, strict=True)
    ]
    main = [(w[0], b[0]) for w, b in zip(bank.main.weights, bank.main.biases, strict=True)]
    first_state = main[0][0][:, : bank.width]
    rest = main[1:]
    tensors = (
        first_bias,
        tangent_bias,
        first_state,
        *[w for w, _ in tower],
        *[b for _, b in tower],
        *[w for w, _ in rest],
        *[b for _, b in rest],
    )
    keep = torch.is_grad_enabled() and any(p.requires_grad for p in tensors)
    options = (bank.activation, method, substeps, n_times, keep, len(tower))
    return _TaylorRollout.apply(options, x0, steps.to(x0.dtype).view(-1, 1, 1), *tensors)


class _TaylorRollout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, options, x0, steps, first_bias, tangent_bias, first_state, *layers):
        activation, method, substeps, n_times, keep, n_tower = options
        tower_w, tower_b = layers[:n_tower], layers[n_tower : 2 * n_tower]
        n_rest = (len(layers) - 2 * n_tower) // 2
        rest_w, rest_b = layers[2 * n_tower : 2 * n_tower + n_rest], layers[2 * n_tower + n_rest :]
        act, saves_output = activation_fn(activation), ACTIVATIONS[activation].saves_output
        bias = first_bias.unsqueeze(1)  # [B, 1, width]: broadcast over a row's N states
        tangent = tangent_bias.unsqueeze(1)
        tower = [(w.T, b) for w, b in zip(tower_w, tower_b, strict=True)]
        rest = [(w.T, b) for w, b in zip(rest_w, rest_b, strict=True)]
        first_t, last = first_state.T, len(rest) - 1

        def field(y: Tensor):
            """f(y) [B, N, d]; the cache: each layer's input and what its activation's reverse
            needs (tower: the saved tensor; main: act' and act'' ⊙ the tangent pre-activation)."""
            inputs, saved, h = [], [], y
            for w_t, b in tower:
                inputs.append(h)
                pre = torch.matmul(h, w_t).add_(b)
                h = act(pre)
                saved.append(h if saves_output else pre)
            inputs.append(h)
            pre = torch.matmul(h, first_t).add_(bias)
            value, slope, curv = act_slope_curvature(activation, pre)
            saved.append((slope, curv * tangent))
            both = torch.stack([value, slope * tangent])  # [2, B, N, width]: primal, tangent
            for i, (w_t, b) in enumerate(rest):
                inputs.append(both)
                out = torch.matmul(both, w_t)
                pre, dpre = out[0].add_(b), out[1]
                if i == last:
                    return pre + dpre, (inputs, saved)
                value, slope, curv = act_slope_curvature(activation, pre)
                saved.append((slope, curv * dpre))
                both = torch.stack([value, slope * dpre])
            raise AssertionError("the last layer returns")

        schedule = FixedSteps(method, steps, substeps, n_times)
        states, caches = schedule.forward(field, x0, keep)
        ctx.options, ctx.caches, ctx.schedule = options, caches, schedule
        ctx.save_for_backward(first_state, *tower_w, *rest_w)
        return torch.stack(states, dim=2)

    @staticmethod
    def backward(ctx, grad):
        activation, n_tower = ctx.options[0], ctx.options[-1]
        first_state, *weights = ctx.saved_tensors
        tower_w, rest_w = weights[:n_tower], weights[n_tower:]
        act_back = ACTIVATIONS[activation].backward
        # dL/d(pre-activation) per stage: tower layers, the first main layer, its tangent
        # bias, then the main layers after it ([2, B, N, out]: primal, tangent).
        n_layers = n_tower + 1 + len(rest_w)
        records = StageRecords(n_layers + 1)
        tangent_slot, last = n_layers, len(rest_w) - 1
        # A context step needs the gradients of the two first-layer biases only: no weight
        # gradient is recorded or reduced then (the state's reverse pass still runs).
        need_weights = any(ctx.needs_input_grad[5:])

        def field_back(cache, g: Tensor) -> Tensor:
            saved = cache[1]
            if need_weights:  # the output is primal + tangent: both get g
                both = torch.stack([g, g])
                records.add(n_tower + last + 1, both)
                g_h, g_t = torch.matmul(both, rest_w[last]).unbind(0)
            else:
                g_h = g_t = torch.matmul(g, rest_w[last])
            for i in reversed(range(last)):
                slope, curv_dpre = saved[n_tower + 1 + i]
                g_pre = torch.addcmul(g_h * slope, g_t, curv_dpre)
                both = torch.stack([g_pre, g_t * slope])
                if need_weights:
                    records.add(n_tower + 1 + i, both)
                g_h, g_t = torch.matmul(both, rest_w[i]).unbind(0)
            slope, curv_tangent = saved[n_tower]
            g_pre = torch.addcmul(g_h * slope, g_t, curv_tangent)
            records.add(n_tower, g_pre)
            records.add(tangent_slot, g_t * slope)
            g = torch.matmul(g_pre, first_state)
            for layer in reversed(range(n_tower)):
                g = act_back(g, saved[layer])
                if need_weights:
                    records.add(layer, g)
                g = torch.matmul(g, tower_w[layer])
            return g

        ctx.schedule.backward(field_back, ctx.caches, lambda j: grad[:, :, j])
        stacked = records.stacked

        def inputs(layer: int) -> Tensor:
            return layer_inputs(ctx.caches, layer)

        g_first = stacked(n_tower)  # [stages, B, N, width]
        g_first_bias = g_first.sum(dim=(0, 2))
        g_tangent_bias = stacked(tangent_slot).sum(dim=(0, 2))
        if not need_weights:
            return (None, None, None, g_first_bias, g_tangent_bias) + (None,) * (
                1 + len(weights) * 2
            )
        tower_gw, tower_gb = [], []
        for layer in range(n_tower):
            g = stacked(layer)
            tower_gw.append(weight_gradient(g, inputs(layer)))
            tower_gb.append(g.sum(dim=(0, 1, 2)))
        g_first_state = weight_gradient(g_first, inputs(n_tower))
        rest_gw, rest_gb = [], []
        for i in range(len(rest_w)):
            g = stacked(n_tower + 1 + i)  # [stages, 2, B, N, out]
            rest_gw.append(weight_gradient(g, inputs(n_tower + 1 + i)))
            rest_gb.append(g[:, 0].sum(dim=(0, 1, 2)))
        return (
            None, None, None, g_first_bias, g_tangent_bias, g_first_state,
            *tower_gw, *tower_gb, *rest_gw, *rest_gb,
        )  # fmt: skip
