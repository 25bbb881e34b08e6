"""Batched rollouts of per-environment vector fields with ``torchdiffeq.odeint``.

All environments are integrated in one ``odeint`` call, differentiating through the solver's
operations (discretise-then-optimise, not the adjoint method).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from mixer.errors import ConfigError

FIXED_STEP_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")

FieldFn = Callable[[Tensor, Tensor], Tensor]


class VectorField:
    """A vector field f(t, x) that counts its evaluations in ``nfe``.

    The counter is a Python int, so counting never waits on the device. Read ``nfe`` after a
    rollout; call ``reset_nfe()`` to start again.
    """

    def __init__(self, fn: FieldFn):
        self.fn = fn
        self.nfe = 0

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
    return dt


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
    between consecutive observations (so each environment's step in t is Δt_e / substeps);
    the grid is built as j / substeps, which lands exactly on every observation.
    Adaptive methods (``dopri5``, ...) use ``rtol``/``atol`` with one step-size control
    shared by all environments. Pass a ``VectorField`` to count evaluations.
    """
    if x0.dim() != 3 or x0.shape[0] != t.shape[0]:
        raise ValueError(
            f"expected x0 [E, N, d] and t [E, T] with the same E, "
            f"got {tuple(x0.shape)} and {tuple(t.shape)}"
        )
    if method not in FIXED_STEP_METHODS + ADAPTIVE_METHODS:
        valid = ", ".join(FIXED_STEP_METHODS + ADAPTIVE_METHODS)
        raise ConfigError(f"unknown ODE solver {method!r}; valid names: {valid}")
    if substeps < 1:
        raise ConfigError(f"substeps must be >= 1, got {substeps}")
    n_times = t.shape[1]
    if n_times == 1:
        return x0.unsqueeze(2)
    scale = uniform_steps(t).to(dtype=x0.dtype, device=x0.device).view(-1, 1, 1)
    tau = torch.arange(n_times, dtype=x0.dtype, device=x0.device)

    def rescaled(tau_now: Tensor, x: Tensor) -> Tensor:
        return scale * field_fn(tau_now, x)

    options = {}
    if method in FIXED_STEP_METHODS:
        n_steps = (n_times - 1) * substeps
        grid = torch.arange(n_steps + 1, dtype=x0.dtype, device=x0.device) / substeps
        options["grid_constructor"] = lambda func, y0, t_obs: grid
    solution = odeint(rescaled, x0, tau, rtol=rtol, atol=atol, method=method, options=options)
    return solution.permute(1, 2, 0, 3)  # [T, E, N, d] -> [E, N, T, d]
