"""The solver table: every ODE solver the suite runs, in one place (no torch here).

The config schema's ``solver.method`` enum is generated from it (:mod:`mixer.config.schema`),
and every rollout and evaluation count reads it. Fixed-step methods carry the explicit
Butcher tableau (a: stage weights below the diagonal, b: final weights) of torchdiffeq's
fixed-grid solver of the same name, so both give the same numbers ("rk4" is its 3/8 rule);
adaptive methods go to ``torchdiffeq.odeint`` with ``rtol``/``atol``.
"""

from __future__ import annotations

Tableau = tuple[list[list[float]], list[float]]

TABLEAUS: dict[str, Tableau] = {
    "euler": ([[]], [1.0]),
    "midpoint": ([[], [0.5]], [0.0, 1.0]),
    "heun2": ([[], [1.0]], [0.5, 0.5]),
    "heun3": ([[], [1 / 3], [0.0, 2 / 3]], [0.25, 0.0, 0.75]),
    "rk4": ([[], [1 / 3], [-1 / 3, 1.0], [1.0, -1.0, 1.0]], [0.125, 0.375, 0.375, 0.125]),
}
FIXED_STEP_METHODS = tuple(TABLEAUS)
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
SOLVERS = FIXED_STEP_METHODS + ADAPTIVE_METHODS


def evaluations(method: str, n_times: int, substeps: int) -> int:
    """Field evaluations of a fixed-step rollout over ``n_times`` observations."""
    return (n_times - 1) * substeps * len(TABLEAUS[method][1])
