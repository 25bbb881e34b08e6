"""ODEBench-10: ten loosely related 2-D families (docs/DATASETS.md §4), state (y0, y1).

Each family samples 20 points over [0, T) of its own horizon T and writes its law as
``law(y0, y1, p) -> (y0', y1')``. The order of ``ODEBENCH10`` is the order of the table: a
config's ``n_families: n`` keeps the first n.
"""

from __future__ import annotations

import numpy as np

from mixer.data.systems import ODESystem, register_system


def _box(corner_a, corner_b):
    """(low, high) of the box spanned by two corners."""
    return (
        tuple(float(min(a, b)) for a, b in zip(corner_a, corner_b, strict=True)),
        tuple(float(max(a, b)) for a, b in zip(corner_a, corner_b, strict=True)),
    )


class _OdeBench(ODESystem):
    state_dim = 2
    n_points = 20
    horizon_T = 0.0

    def __init_subclass__(cls, **kwargs):
        cls.dt = cls.horizon_T / cls.n_points
        cls.varied = tuple(cls.reference)  # every constant of an ODEBench law varies
        super().__init_subclass__(**kwargs)

    def vector_field(self, y, p):
        return np.stack(self.law(y[..., 0], y[..., 1], p), axis=-1)

    def law(self, y0, y1, p) -> tuple:
        """(y0', y1') at the state (y0, y1) for the constants ``p``."""
        raise NotImplementedError


@register_system()
class HarmonicOscillator(_OdeBench):
    name, odebench_id, horizon_T = "harmonic_oscillator", 24, 10.0
    reference = {"c0": 2.1}
    ic_low, ic_high = _box((0.4, -0.03), (0.0, 0.2))

    def law(self, y0, y1, p):
        return y1, -p["c0"] * y0


@register_system()
class DampedHarmonicOscillator(_OdeBench):
    name, odebench_id, horizon_T = "damped_harmonic_oscillator", 25, 8.0
    reference = {"c0": 4.5, "c1": 0.43}
    ic_low, ic_high = _box((0.12, 0.043), (0.0, -0.3))

    def law(self, y0, y1, p):
        return y1, -p["c0"] * y0 - p["c1"] * y1


@register_system()
class Pendulum(_OdeBench):
    name, odebench_id, horizon_T = "pendulum", 28, 15.0
    reference = {"c0": 0.9}
    ic_low, ic_high = _box((-1.9, 0.0), (0.3, 0.8))

    def law(self, y0, y1, p):
        return y1, -p["c0"] * np.sin(y0)


@register_system()
class DampedDoubleWell(_OdeBench):
    name, odebench_id, horizon_T = "damped_double_well", 32, 5.0
    reference = {"c0": 0.18}
    ic_low, ic_high = _box((-1.8, -1.8), (-2.8, 1.0))

    def law(self, y0, y1, p):
        return y1, -p["c0"] * y1 - y0**3 + y0


@register_system()
class BeadOnRotatingHoop(_OdeBench):
    name, odebench_id, horizon_T = "bead_on_rotating_hoop", 34, 20.0
    reference = {"c0": 0.93}
    ic_low, ic_high = _box((2.1, 0.0), (-1.2, -0.2))

    def law(self, y0, y1, p):
        return y1, (-p["c0"] + np.cos(y0)) * np.sin(y0)


@register_system()
class ShearFlow(_OdeBench):
    """Rotation of an object in shear flow; singular where tan(y1) = 0."""

    name, odebench_id, horizon_T = "shear_flow", 35, 5.0
    reference = {"c0": 4.2}
    ic_low, ic_high = _box((1.13, -0.3), (0.7, -1.7))
    # Trajectories that come closer than this to sin(y1) = 0 are resampled: near the
    # singularity the law is unbounded and the data would be dominated by one blow-up.
    min_abs_sin_y1 = 0.05

    def law(self, y0, y1, p):
        s1, c1 = np.sin(y1), np.cos(y1)
        return np.cos(y0) * c1 / s1, np.sin(y0) * (p["c0"] * s1**2 + c1**2)

    def admissible(self, X):
        finite = np.isfinite(X).all(axis=(1, 2))
        with np.errstate(invalid="ignore"):
            far = (np.abs(np.sin(X[..., 1])) >= self.min_abs_sin_y1).all(axis=1)
        return finite & far


@register_system()
class VanDerPol(_OdeBench):
    name, odebench_id, horizon_T = "van_der_pol", 37, 15.0
    reference = {"c0": 0.43}
    ic_low, ic_high = _box((2.2, 0.0), (0.1, 3.2))

    def law(self, y0, y1, p):
        return y1, -p["c0"] * y1 * (y0**2 - 1.0) - y0


@register_system()
class VanDerPolLienard(_OdeBench):
    name, odebench_id, horizon_T = "van_der_pol_lienard", 38, 15.0
    reference = {"c0": 3.37}
    ic_low, ic_high = _box((0.7, 0.0), (-1.1, -0.7))

    def law(self, y0, y1, p):
        return p["c0"] * (-(y0**3) / 3.0 + y0 + y1), -y0 / p["c0"]


@register_system()
class GlycolysisSelkov2D(_OdeBench):
    """Sel'kov's law as in ODEBench: y1' = -c0 y1 + c1 - y0^2 y1.

    The ``-c0 y1`` term acts on y1, as in the Sel'kov model (and the dataset of
    docs/DATASETS.md §3), so that this family is the genuine law.
    """

    name, odebench_id, horizon_T = "glycolysis_selkov_2d", 39, 4.0
    reference = {"c0": 2.4, "c1": 0.07}
    ic_low, ic_high = _box((0.4, 0.31), (0.2, -0.7))

    def law(self, y0, y1, p):
        y02y1 = y0 * y0 * y1
        return p["c0"] * y1 + y02y1 - y0, -p["c0"] * y1 + p["c1"] - y02y1


@register_system()
class Duffing(_OdeBench):
    """Unforced, damped Duffing oscillator (the reference code repeats van der Pol here)."""

    name, odebench_id, horizon_T = "duffing", 40, 10.0
    reference = {"c0": 0.2}
    ic_low, ic_high = _box((0.63, -0.03), (0.2, 0.2))

    def law(self, y0, y1, p):
        return y1, -p["c0"] * y1 - y0 - y0**3


ODEBENCH10 = tuple(
    cls.name
    for cls in (
        HarmonicOscillator,
        DampedHarmonicOscillator,
        Pendulum,
        DampedDoubleWell,
        BeadOnRotatingHoop,
        ShearFlow,
        VanDerPol,
        VanDerPolLienard,
        GlycolysisSelkov2D,
        Duffing,
    )
)
