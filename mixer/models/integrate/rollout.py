"""Batched rollouts of per-environment vector fields.

All environments are integrated in one call, differentiating through the solver's operations
(discretise-then-optimise, not the adjoint method). Fixed-step methods run here, with their
torchdiffeq Butcher tableaus and without any host synchronisation; a field that carries a
:class:`~mixer.models.grouped.RoutedMLP` (``VectorField.fast``) is integrated by one autograd
node whose reverse pass is written by hand (:class:`_FastRollout`). Adaptive methods go to
``torchdiffeq.odeint``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from mixer.errors import ConfigError
from mixer.models.grouped import RoutedMLP, env_to_rows, pad_last
from mixer.models.grouped_grads import Accumulator
from mixer.models.integrate.runge_kutta import FixedSteps
from mixer.models.integrate.solvers import (
    FIXED_STEP_METHODS,
    SOLVERS,
    evaluations,
)

FieldFn = Callable[[Tensor, Tensor], Tensor]


class VectorField:
    """A vector field f(t, x) that counts its evaluations in ``nfe``.

    The counter is a Python int, so counting never waits on the device. Read ``nfe`` after a
    rollout; call ``reset_nfe()`` to start again.
    """

    def __init__(self, fn: FieldFn, fast: tuple[RoutedMLP, Tensor | None] | None = None):
        self.fn = fn
        self.nfe = 0
        # (network, per-environment output scale or None): lets a fixed-step rollout run
        # the field with its hand-written reverse pass instead of autograd.
        self.fast = fast

    def __call__(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        return self.fn(t, x)

    def reset_nfe(self) -> None:
        self.nfe = 0


def uniform_steps(t: Tensor) -> Tensor:
    """Each row's step Δt_e [E]; ValueError unless every row of t [E, T] is uniform, increasing.

    Δt_e is the mean step (t_e,T-1 - t_e,0) / (T - 1). A row is uniform when every time lies on
    t_e,0 + j Δt_e within 1e-5 Δt_e plus the float32 resolution of the grid, so that grids
    built in float32 and stored as float64 still pass.
    """
    if t.dim() != 2 or t.shape[1] < 2:
        raise ValueError(f"t must be [E, T] with T >= 2, got {tuple(t.shape)}")
    known = _CHECKED_GRIDS.get(id(t))
    if known is not None and known[0]() is t and known[1] == t._version:
        return known[2]  # checked before: no host synchronisation this time
    n_times = t.shape[1]
    dt = (t[:, -1] - t[:, 0]) / (n_times - 1)
    index = torch.arange(n_times, dtype=t.dtype, device=t.device)
    deviation = (t - (t[:, :1] + index * dt.unsqueeze(1))).abs().amax(dim=1)
    tol = 1e-5 * dt.abs() + 4 * torch.finfo(torch.float32).eps * t.abs().amax(dim=1)
    bad = (deviation > tol) | (dt <= 0)
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        steps = t[row].diff()
        raise ValueError(
            f"time grid of environment {row} is not uniform and increasing "
            f"(steps range from {steps.min().item():.6g} to {steps.max().item():.6g})"
        )
    if not t.requires_grad:
        key = id(t)
        gone = lambda _ref, key=key: _CHECKED_GRIDS.pop(key, None)  # noqa: E731
        _CHECKED_GRIDS[key] = (weakref.ref(t, gone), t._version, dt)
    return dt


# Grids already checked (the check reads a bool on the host), by id, while they live: a
# training batch's grid is the same tensor at every step, so only its first rollout pays
# the synchronisation.
_CHECKED_GRIDS: dict[int, tuple] = {}


def rollout(
    field_fn: FieldFn,
    x0: Tensor,
    t: Tensor,
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-3,
    atol: float = 1e-6,
) -> Tensor:
    """Integrate x' = f_e(x) from x0 [E, N, d] over per-environment grids t [E, T].

    Returns [E, N, T, d], with the first time point equal to x0.

    Environments may have different step sizes Δt_e (every row of t must be uniform, else
    ValueError) but share T. They are integrated together on the common normalised grid
    τ = 0, 1, ..., T-1 by the change of variable t = t_e0 + τ Δt_e, under which
    dx/dτ = Δt_e f_e(x). This is exact, not an approximation: the fields are autonomous, so the
    trajectory of the rescaled field at τ = j is the trajectory of f_e at t_ej. ``field_fn``
    is therefore called as ``field_fn(τ, x)`` and must ignore its first argument.

    Fixed-step methods (``rk4`` by default) take ``substeps`` equal steps of 1/substeps in τ
    between consecutive observations (so each environment's step in t is Δt_e / substeps),
    which lands exactly on every observation; they run here, with torchdiffeq's tableaus.
    Adaptive methods (``dopri5``, ...) use ``rtol``/``atol`` with one step-size control
    shared by all environments. Pass a ``VectorField`` to count evaluations.
    """
    if x0.dim() != 3 or x0.shape[0] != t.shape[0]:
        raise ValueError(
            f"expected x0 [E, N, d] and t [E, T] with the same E, "
            f"got {tuple(x0.shape)} and {tuple(t.shape)}"
        )
    if method not in SOLVERS:
        valid = ", ".join(SOLVERS)
        raise ConfigError(f"unknown ODE solver {method!r}; valid names: {valid}")
    if substeps < 1:
        raise ConfigError(f"substeps must be >= 1, got {substeps}")
    n_times = t.shape[1]
    if n_times == 1:
        return x0.unsqueeze(2)
    scale = uniform_steps(t).to(dtype=x0.dtype, device=x0.device)
    if method in FIXED_STEP_METHODS:
        fast = getattr(field_fn, "fast", None)
        if fast is not None:
            out = fast_rollout(fast[0], fast[1], x0, scale, method, substeps, n_times)
            field_fn.nfe += evaluations(method, n_times, substeps)
            return out
        return fixed_step_rollout(field_fn, x0, scale, method, substeps, n_times)
    scale = scale.view(-1, 1, 1)
    tau = torch.arange(n_times, dtype=x0.dtype, device=x0.device)

    def rescaled(tau_now: Tensor, x: Tensor) -> Tensor:
        return scale * field_fn(tau_now, x)

    solution = odeint(rescaled, x0, tau, rtol=rtol, atol=atol, method=method)
    return solution.permute(1, 2, 0, 3)  # [T, E, N, d] -> [E, N, T, d]


def fixed_step_rollout(
    field_fn: FieldFn, x0: Tensor, scale: Tensor, method: str, substeps: int, n_times: int
) -> Tensor:
    """Explicit Runge-Kutta on τ with ``substeps`` steps per interval; x0 [E, N, d].

    Plain tensor operations (autograd records them); no host synchronisation.
    """
    # Δτ · Δt_e · w per environment, folded once: a stage is then y + c ⊙ k with no scalar
    # factor, which keeps the recorded graph (and CAVIA's second-order one) small.
    schedule = FixedSteps(method, scale.view(-1, 1, 1), substeps, n_times)
    tau = x0.new_zeros(())
    states, _ = schedule.forward(lambda y: (field_fn(tau, y), None), x0, keep=False)
    return torch.stack(states, dim=2)


def fast_rollout(
    mlp: RoutedMLP,
    out_scale: Tensor | None,
    x0: Tensor,
    scale: Tensor,
    method: str,
    substeps: int,
    n_times: int,
) -> Tensor:
    """:func:`fixed_step_rollout` of a RoutedMLP field (times ``out_scale`` [E] if given),
    as one autograd node with a hand-written reverse pass."""
    routing = mlp.routing
    n_rows = x0.shape[1]
    groups = routing.rows(n_rows)
    per_env = scale if out_scale is None else scale * out_scale
    steps = env_to_rows(per_env.index_select(0, routing.order), n_rows).unsqueeze(1)  # [R, 1]
    rows = pad_last(routing.sort(x0), mlp.in_dim)
    tensors = mlp.tensors()
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (rows, steps, *tensors))
    traj = _FastRollout.apply(
        mlp, groups, method, substeps, n_times, keep, rows, steps, *tensors
    )  # [R, T, d_p]
    return routing.unsort(traj[..., : x0.shape[-1]], n_rows)


class _FastRollout(torch.autograd.Function):
    """A fixed-step rollout of a RoutedMLP: forward stores every stage's cache; backward is
    the exact reverse of the Runge-Kutta steps (discretise-then-optimise), and each weight
    gradient is reduced once, over all evaluations.

    The per-row step s_r (Δτ Δt_e, times the routed probability for the ``gd`` gate) is
    folded into each tableau coefficient, c = h·a_ij·s_r, so a stage costs one fused
    multiply-add per term: y_i = x + Σ_j c_ij f_j.
    """

    @staticmethod
    def forward(ctx, mlp, groups, method, substeps, n_times, keep, x, steps, *tensors):
        schedule = FixedSteps(method, steps, substeps, n_times)
        spec = mlp.keep_spec(ctx.needs_input_grad[8:]) if keep else None
        keep_f = keep and ctx.needs_input_grad[7]  # f only for the gradient of the steps

        def field(y: Tensor):
            f, cache = mlp.forward(y, tensors, groups, spec)
            return f, (cache, f if keep_f else None)

        states, caches = schedule.forward(field, x, keep)
        ctx.mlp, ctx.groups, ctx.schedule = mlp, groups, schedule
        ctx.caches, ctx.tensors = caches, tensors
        ctx.save_for_backward(steps)
        return torch.stack(states, dim=1)

    @staticmethod
    def backward(ctx, grad):
        (steps,) = ctx.saved_tensors
        mlp, groups, caches = ctx.mlp, ctx.groups, ctx.caches
        need_steps = ctx.needs_input_grad[7]
        acc = Accumulator(mlp, ctx.needs_input_grad[8:], need_x=True)
        # Σ over stages of g_f · f, where g_f = s · g_k is the gradient of the unscaled f
        # (s > 0: Δt > 0 and a routed probability >= 1/K), divided by s once at the end.
        g_steps = torch.zeros_like(steps) if need_steps else None

        def field_back(stage, g_f: Tensor) -> Tensor:
            cache, f = stage
            if need_steps:
                g_steps.add_((g_f * f).sum(dim=1, keepdim=True))
            return mlp.backward(cache, g_f, ctx.tensors, groups, acc)

        g_state = ctx.schedule.backward(field_back, caches, lambda j: grad[:, j])
        if need_steps:
            g_steps = g_steps / steps
        return (None,) * 6 + (g_state, g_steps, *acc.finish(groups))
