"""Explicit Runge-Kutta steps and their exact reverse: the one home of fixed-step integration.

Every fixed-step rollout runs on :class:`FixedSteps`: the autograd one
(``rollout.fixed_step_rollout``) and the three whose reverse pass is written by hand (the
routed experts' ``rollout._FastRollout``, CAVIA's ``sensitivity`` and NCF's ``taylor``). The
coefficients are folded per row, c = h·a_ij·Δt, so a stage is y_i = x + Σ_j c_ij f_j, one fused
multiply-add per term. The field returns (f, cache); its reverse maps (cache, dL/df) to dL/dy.
A hand-written reverse records each stage's gradients per layer (:class:`StageRecords`) and
reduces every weight gradient once, as one product over all evaluations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mixer.models.integrate.solvers import TABLEAUS

FieldWithCache = Callable[[Tensor], tuple[Tensor, object]]
FieldReverse = Callable[[object, Tensor], Tensor]


def coefficients(method: str, steps: Tensor, substeps: int):
    """The tableau's coefficients h·w·s per row (or environment), shaped like ``steps`` (the
    step s of each row), h = 1 / ``substeps``; None where the weight is 0."""
    a, b = TABLEAUS[method]
    h = 1.0 / substeps
    coef_a = [[steps * (h * w) if w else None for w in row] for row in a]
    coef_b = [steps * (h * w) if w else None for w in b]
    return coef_a, coef_b


class FixedSteps:
    """One fixed-step rollout: ``substeps`` steps per interval over ``n_times`` observations,
    each row at its own step ``steps``; the forward loop and its exact reverse."""

    def __init__(self, method: str, steps: Tensor, substeps: int, n_times: int):
        self.coefs = coefficients(method, steps, substeps)
        self.substeps, self.n_steps = substeps, (n_times - 1) * substeps

    def forward(self, field: FieldWithCache, state: Tensor, keep: bool):
        """(the states at the observations, the stages' caches in order, [] without keep)."""
        states, caches = rk_forward(field, state, self.coefs, self.n_steps, keep)
        return states[:: self.substeps], caches

    def backward(self, field_back: FieldReverse, caches: list, grad_at: Callable) -> Tensor:
        """dL/d(initial state), ``grad_at(j)`` being dL/d(state at observation j)."""
        return rk_backward(field_back, caches, self.coefs, self.n_steps, self.substeps, grad_at)


class StageRecords:
    """dL/d(pre-activation) of each layer at every stage, recorded during a reverse pass (in
    reverse stage order) and reduced once: one product per weight over all evaluations."""

    def __init__(self, n_layers: int):
        self.rows: list[list[Tensor]] = [[] for _ in range(n_layers)]

    def add(self, layer: int, g: Tensor) -> None:
        self.rows[layer].append(g)

    def stacked(self, layer: int) -> Tensor:
        """[stages, ...] in forward stage order."""
        return torch.stack(self.rows[layer][::-1])


def layer_inputs(caches: list, layer: int) -> Tensor:
    """[stages, ...]: the input of ``layer`` at every stage (each cache holds its layers'
    inputs first)."""
    return torch.stack([cache[0][layer] for cache in caches])


def weight_gradient(g: Tensor, h: Tensor) -> Tensor:
    """Σ over every stage and row of gᵀ h: [out, in]."""
    return g.reshape(-1, g.shape[-1]).T @ h.reshape(-1, h.shape[-1])


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
