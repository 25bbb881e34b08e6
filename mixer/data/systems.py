"""The systems registry: one small class per parametric ODE family.

A system declares its law and its sampling protocol; generation (``generate.py``) and the
environment design (``design.py``) do the rest. A user adds a family by subclassing
:class:`ODESystem` in any importable module and naming it in the config as
``"package.module:ClassName"``; built-in families register themselves under their ``name``
with ``@register_system()``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mixer.errors import ConfigError
from mixer.registry import Registry

SYSTEMS = Registry(
    "system", "mixer.data.systems:ODESystem", ("mixer.data.families", "mixer.data.odebench")
)
register_system = SYSTEMS.register


class ODESystem:
    """Contract of a parametric ODE family.

    Class attributes to set:
        name: registry name, also the ``family`` written in the dataset metadata.
        state_dim: dimension d of the state.
        reference: every parameter of the law (fixed ones included) -> reference value.
        varied: the parameters that change across environments (a subset of ``reference``).
        ic_low, ic_high: corners of the box initial conditions are drawn uniformly from.
        dt, n_points: the sampling grid ``t_k = k * dt`` for ``k = 0 .. n_points - 1``.

    Methods:
        vector_field(y, p): the law, vectorised. ``y`` has shape [..., d]; every value of ``p``
            is a scalar or an array that broadcasts against ``y[..., 0]``. Returns [..., d].
        admissible(X): per-trajectory mask of trajectories [M, T, d] that may be kept
            (finite by default; a family with a singularity also checks its distance to it).
        protocol(): ``None`` for the generic grid design, or the published protocol
            (see :class:`Protocol`).
    """

    name: ClassVar[str] = ""
    state_dim: ClassVar[int] = 0
    reference: ClassVar[dict[str, float]] = {}
    varied: ClassVar[tuple[str, ...]] = ()
    ic_low: ClassVar[tuple[float, ...]] = ()
    ic_high: ClassVar[tuple[float, ...]] = ()
    dt: ClassVar[float] = 0.0
    n_points: ClassVar[int] = 0

    @property
    def horizon(self) -> float:
        return self.dt * self.n_points

    def time_grid(self) -> np.ndarray:
        return np.arange(self.n_points, dtype=np.float64) * self.dt

    def vector_field(self, y: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def admissible(self, X: np.ndarray) -> np.ndarray:
        return np.isfinite(X).all(axis=(1, 2))

    def protocol(self) -> Protocol | None:
        return None

    @classmethod
    def check(cls) -> None:
        """Fail early, naming the class, when a subclass breaks the contract."""
        where = f"{cls.__module__}.{cls.__qualname__}"
        problems = []
        if not cls.name:
            problems.append("set `name`")
        if cls.state_dim < 1:
            problems.append("set `state_dim` >= 1")
        if not set(cls.varied) <= set(cls.reference):
            problems.append("every name in `varied` must be a key of `reference`")
        if not (len(cls.ic_low) == len(cls.ic_high) == cls.state_dim):
            problems.append("`ic_low` and `ic_high` need `state_dim` entries each")
        if cls.dt <= 0 or cls.n_points < 2:
            problems.append("set `dt` > 0 and `n_points` >= 2")
        if problems:
            raise ConfigError(f"system {where} is incomplete: " + "; ".join(problems))


class Protocol:
    """A published environment design, given explicitly instead of the generic grid.

    Args:
        train: parameter dicts (varied parameters only) of the training environments.
        train_family: family index of each training environment.
        adapt: parameter dicts of the adaptation environments.
        adapt_family: family index of each adaptation environment (the nearest training
            family by the family parameter, ties to the lower index).
    """

    def __init__(self, train, train_family, adapt, adapt_family):
        self.train = [dict(p) for p in train]
        self.train_family = list(train_family)
        self.adapt = [dict(p) for p in adapt]
        self.adapt_family = list(adapt_family)


def nearest_family(value: float, family_values: list[float]) -> int:
    """Index of the closest family value; ties go to the lower index."""
    gaps = [abs(value - v) for v in family_values]
    return int(np.argmin(np.round(gaps, 12)))


def resolve_system(name: str) -> ODESystem:
    """An instance of the registered system ``name`` or of ``"module:Class"``."""
    cls = SYSTEMS.get(name)
    cls.check()
    return cls()
