"""Ground-truth integration of many trajectories of one system at once (scipy DOP853).

All trajectories of a chunk are stacked into one state vector so that the numpy vector field
is called once per stage for the whole chunk, not once per trajectory. scipy's step control
uses the RMS norm over components; a batched solve with tolerance tol / sqrt(n) keeps the
*maximum* scaled local error of every component below what a solo solve with ``tol`` allows,
so batching never loosens the per-trajectory accuracy (DOP853 is 8th order, so the tighter
tolerance costs only (sqrt n)^(1/8) more steps).
"""

from __future__ import annotations

import numpy as np

from mixer.data.systems import ODESystem

TOLERANCE = 1e-10
CHUNK = 128  # trajectories per batched solve


def integrate(
    system: ODESystem, y0: np.ndarray, params: dict[str, np.ndarray], t: np.ndarray
) -> np.ndarray:
    """Trajectories [M, T, d] from initial states y0 [M, d] with per-trajectory params [M].

    A trajectory the solver cannot finish comes back as NaN (the caller resamples it).
    """
    out = np.empty((len(y0), len(t), system.state_dim))
    for start in range(0, len(y0), CHUNK):
        sl = slice(start, start + CHUNK)
        chunk_params = {k: v[sl] for k, v in params.items()}
        out[sl] = _solve_chunk(system, y0[sl], chunk_params, t)
    return out


def _solve_chunk(system, y0, params, t):
    X = _solve(system, y0, params, t)
    if X is not None:
        return X
    # One bad trajectory fails the whole batched solve: redo them one by one to isolate it.
    out = np.full((len(y0), len(t), system.state_dim), np.nan)
    for m in range(len(y0)):
        X = _solve(system, y0[m : m + 1], {k: v[m : m + 1] for k, v in params.items()}, t)
        if X is not None:
            out[m] = X[0]
    return out


def _solve(system, y0, params, t):
    from scipy.integrate import solve_ivp  # here: training jobs import mixer.data, not scipy's ODEs

    shape = y0.shape
    tol = TOLERANCE / np.sqrt(y0.size)
    # Parameters broadcast against y[..., 0], i.e. one value per trajectory.
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}

    def rhs(_time, z):
        return system.vector_field(z.reshape(shape), p).ravel()

    with np.errstate(all="ignore"):
        sol = solve_ivp(
            rhs, (t[0], t[-1]), y0.ravel(), method="DOP853", t_eval=t, rtol=tol, atol=tol
        )
    if sol.status != 0 or sol.y.shape[1] != len(t):
        return None
    return sol.y.reshape(shape[0], shape[1], len(t)).transpose(0, 2, 1)
