"""The three protocol families of docs/DATASETS.md §1-§3 (CoDA / NCF benchmarks)."""

from __future__ import annotations

import itertools

import numpy as np

from mixer.data.systems import ODESystem, Protocol, nearest_family, register_system


def _product(values: dict[str, list[float]]) -> list[dict[str, float]]:
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values())]


def _grid_protocol(family_param: str, train: dict, adapt: dict) -> Protocol:
    """The protocol of two parameter grids (name -> values, product in the order given).

    The family of an environment is its value of ``family_param``: the index of that training
    value, or for an adaptation environment the index of the nearest one.
    """
    values = train[family_param]
    train_params, adapt_params = _product(train), _product(adapt)
    return Protocol(
        train_params,
        [values.index(p[family_param]) for p in train_params],
        adapt_params,
        [nearest_family(p[family_param], values) for p in adapt_params],
    )


@register_system()
class LotkaVolterra(ODESystem):
    """dx/dt = alpha x - beta x y, dy/dt = delta x y - gamma y; families = values of delta."""

    name = "lotka_volterra"
    state_dim = 2
    reference = {"alpha": 0.5, "beta": 0.75, "gamma": 0.5, "delta": 0.75}
    varied = ("beta", "delta")
    ic_low, ic_high = (1.0, 1.0), (2.0, 2.0)
    dt, n_points = 0.5, 20

    def vector_field(self, y, p):
        x, v = y[..., 0], y[..., 1]
        return np.stack(
            [p["alpha"] * x - p["beta"] * x * v, p["delta"] * x * v - p["gamma"] * v], axis=-1
        )

    def protocol(self):
        train = {"beta": [0.5, 0.75, 1.0], "delta": [0.5, 0.75, 1.0]}
        return _grid_protocol("delta", train, {"beta": [0.625, 1.125], "delta": [0.625, 1.125]})


@register_system()
class Glycolytic(ODESystem):
    """The 7-D glycolytic oscillator (Daniels & Nemenman); families = values of k1."""

    name = "glycolytic"
    state_dim = 7
    reference = {
        "J0": 2.5, "k1": 100.0, "k2": 6.0, "k3": 16.0, "k4": 100.0, "k5": 1.28, "k6": 12.0,
        "K1": 0.75, "q": 4.0, "N": 1.0, "A": 4.0, "kappa": 13.0, "psi": 0.1, "k": 1.8,
    }  # fmt: skip
    varied = ("k1", "K1")
    ic_low = (0.15, 0.19, 0.04, 0.10, 0.08, 0.14, 0.05)
    ic_high = (1.60, 2.16, 0.20, 0.35, 0.30, 2.67, 0.10)
    dt, n_points = 0.05, 20

    def vector_field(self, y, p):
        s1, s2, s3, s4, s5, s6, s7 = (y[..., i] for i in range(7))
        r1 = p["k1"] * s1 * s6 / (1.0 + (s6 / p["K1"]) ** p["q"])
        r2 = p["k2"] * s2 * (p["N"] - s5)
        r3 = p["k3"] * s3 * (p["A"] - s6)
        r4 = p["k4"] * s4 * s5
        r6 = p["k6"] * s2 * s5
        leak = p["kappa"] * (s4 - s7)
        return np.stack(
            [
                p["J0"] - r1,
                2 * r1 - r2 - r6,
                r2 - r3,
                r3 - r4 - leak,
                r2 - r4 - r6,
                -2 * r1 + 2 * r3 - p["k5"] * s6,
                p["psi"] * leak - p["k"] * s7,
            ],
            axis=-1,
        )

    def protocol(self):
        train = {"k1": [100.0, 90.0, 80.0], "K1": [1.0, 0.75, 0.5]}
        return _grid_protocol("k1", train, {"k1": [85.0, 95.0], "K1": [0.625, 0.875]})


@register_system()
class Selkov(ODESystem):
    """dx/dt = -x + a y + x^2 y, dy/dt = b - a y - x^2 y; families = three regimes of b."""

    name = "selkov"
    state_dim = 2
    reference = {"a": 0.1, "b": 0.0}
    varied = ("b",)
    ic_low, ic_high = (0.0, 0.0), (3.0, 3.0)
    dt, n_points = 4.0, 11

    regimes = ((-1.0, -0.25), (-0.1, 0.1), (0.25, 1.0))

    def vector_field(self, y, p):
        x, v = y[..., 0], y[..., 1]
        x2v = x * x * v
        return np.stack([-x + p["a"] * v + x2v, p["b"] - p["a"] * v - x2v], axis=-1)

    def protocol(self):
        train, family = [], []
        for index, (low, high) in enumerate(self.regimes):
            for b in np.linspace(low, high, 7):
                train.append({"b": float(b)})
                family.append(index)
        adapt = [{"b": b} for b in (-1.25, -0.65, -0.05, 0.02, 0.6, 1.2)]
        # An adaptation value belongs to the regime whose interval is closest to it.
        adapt_family = [
            int(np.argmin([max(lo - p["b"], 0.0, p["b"] - hi) for lo, hi in self.regimes]))
            for p in adapt
        ]
        return Protocol(train, family, adapt, adapt_family)
