"""Explicit Runge-Kutta steps and their exact reverse, for rollouts whose field's reverse pass
is written by hand (the ``sensitivity`` and ``taylor`` modules beside this one).

The coefficients are folded per row, c = h·a_ij·Δt (see ``rollout._coefficients``), so a
stage is y_i = x + Σ_j c_ij f_j, one fused multiply-add per term. The field returns (f, cache);
its reverse maps (cache, dL/df) to dL/dy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

FieldWithCache = Callable[[Tensor], tuple[Tensor, object]]
FieldReverse = Callable[[object, Tensor], Tensor]


def rk_forward(field: FieldWithCache, state: Tensor, coefs, n_steps: int, keep: bool):
    """``n_steps`` steps from ``state``: (states after each step, the stages' caches in
    evaluation order, or [] without ``keep``)."""
    coef_a, coef_b = coefs
    states, caches = [state], []
    for _ in range(n_steps):
        fs = []
        for row in coef_a:
            y = state
            for c, f in zip(row, fs, strict=False):
                if c is not None:
                    y = torch.addcmul(y, c, f)
            f, cache = field(y)
            fs.append(f)
            if keep:  # no reverse pass to come (adaptation, prediction): nothing kept
                caches.append(cache)
        for c, f in zip(coef_b, fs, strict=True):
            if c is not None:
                state = torch.addcmul(state, c, f)
        states.append(state)
    return states, caches


def rk_backward(
    field_back: FieldReverse,
    caches: list,
    coefs,
    n_steps: int,
    substeps: int,
    grad_at: Callable[[int], Tensor],
) -> Tensor:
    """The reverse of :func:`rk_forward`: ``grad_at(j)`` is dL/d(state at observation j), the
    observations being every ``substeps`` steps; returns dL/d(initial state)."""
    coef_a, coef_b = coefs
    n_stages = len(coef_b)
    g_state = grad_at(n_steps // substeps)
    for index in reversed(range(n_steps)):
        # g_f[i]: gradient w.r.t. stage i's field value, = b_i g_x + Σ_l a_li g_y_l (folded)
        g_f = [None if c is None else g_state * c for c in coef_b]
        g_prev = g_state
        stage_caches = caches[index * n_stages : (index + 1) * n_stages]
        for i in reversed(range(n_stages)):
            if g_f[i] is None:  # a stage no later one uses (none of the tableaus has one)
                g_f[i] = torch.zeros_like(g_state)
            g_y = field_back(stage_caches[i], g_f[i])
            # A new tensor at the first stage (g_state may be a view of the caller's
            # gradient), then accumulated in place.
            g_prev = g_prev + g_y if g_prev is g_state else g_prev.add_(g_y)
            for j, c in enumerate(coef_a[i]):
                if c is not None:
                    g_f[j] = g_y * c if g_f[j] is None else g_f[j].addcmul_(g_y, c)
        g_state = g_prev  # a new tensor: some stage ran
        if index % substeps == 0:
            g_state.add_(grad_at(index // substeps))
    return g_state
