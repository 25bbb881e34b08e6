"""Environment design: which parameter vectors a dataset holds, and how they are labelled.

Two designs (docs/DATASETS.md):
- ``protocol``: the published training grid and adaptation set of a family (LV, glycolytic,
  Sel'kov), given by the system's :meth:`~mixer.data.systems.ODESystem.protocol`.
- ``grid`` (ODEBench): ``envs_per_family`` training environments on a grid over
  [0.9, 1.1] x reference for every varied parameter, and four adaptation environments with every
  parameter x linspace(0.8, 1.2, 4) (two inside, two outside the training range).

When a family has two varied parameters and ``envs_per_family`` is not a perfect square (10A uses
5), we build the smallest g x g grid with g^2 >= n and keep the n points nearest its centre
(ties in grid order): for n = 5 that is the centre and the four edge midpoints, which spans the
full [0.9, 1.1] range of both parameters without duplicates.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from mixer.data.systems import ODESystem
from mixer.errors import ConfigError

TRAIN_RANGE = (0.9, 1.1)
ADAPT_FACTORS = tuple(np.linspace(0.8, 1.2, 4))


@dataclass
class Environment:
    """One parameter vector of one family; ``params`` lists every parameter of the law."""

    id: int
    family: str
    family_index: int
    params: dict[str, float]
    role: str  # "train" or "adapt"
    in_training_range: bool
    system: ODESystem = field(repr=False, compare=False)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "family": self.family,
            "family_index": self.family_index,
            "params": dict(self.params),
            "role": self.role,
            "in_training_range": self.in_training_range,
        }


def grid_factors(n: int, n_params: int) -> list[tuple[float, ...]]:
    """n distinct factor tuples on the training grid over TRAIN_RANGE (see module doc)."""
    if n < 1:
        raise ConfigError(f"envs_per_family must be >= 1, got {n}")
    if n == 1:
        return [(1.0,) * n_params]
    side = math.ceil(round(n ** (1.0 / n_params), 9))
    axis = np.linspace(*TRAIN_RANGE, side)
    points = list(itertools.product(*[axis] * n_params))
    if len(points) > n:
        centre = (side - 1) / 2.0
        index_points = list(itertools.product(range(side), repeat=n_params))
        dist = [sum((i - centre) ** 2 for i in ip) for ip in index_points]
        keep = sorted(range(len(points)), key=lambda j: (round(dist[j], 9), j))[:n]
        points = [points[j] for j in sorted(keep)]
    return [tuple(float(v) for v in p) for p in points]


def design_environments(systems: list[ODESystem], spec: dict) -> list[Environment]:
    """All environments of a dataset: training ones first, then adaptation ones, ids 0..E-1."""
    train, adapt = [], []
    family_offset = 0
    for system in systems:
        t_list, a_list, n_fam = _design_one(system, spec)
        train += [(system, p, family_offset + f, True) for p, f, _ in t_list]
        adapt += [(system, p, family_offset + f, inside) for p, f, inside in a_list]
        family_offset += n_fam
    n_families = spec.get("n_families")
    if n_families is not None:
        if n_families > family_offset:
            raise ConfigError(
                f"n_families = {n_families} but the dataset's systems define only "
                f"{family_offset} families. Fix: lower n_families or list more systems."
            )
        train = [e for e in train if e[2] < n_families]
        adapt = [e for e in adapt if e[2] < n_families]
    envs = []
    for role, group in (("train", train), ("adapt", adapt)):
        for system, varied_params, family_index, inside in group:
            params = {**system.reference, **varied_params}
            envs.append(
                Environment(
                    id=len(envs),
                    family=system.name,
                    family_index=family_index,
                    params={k: float(v) for k, v in params.items()},
                    role=role,
                    in_training_range=bool(inside),
                    system=system,
                )
            )
    return envs


def _design_one(system: ODESystem, spec: dict):
    """(train [(params, family, True)], adapt [(params, family, inside)], number of families)."""
    design = spec.get("design", "auto")
    protocol = system.protocol()
    if design == "protocol" and protocol is None:
        raise ConfigError(
            f"design 'protocol' asked for system '{system.name}', which has none. "
            "Fix: use design 'grid' or 'auto'."
        )
    if protocol is not None and design in ("auto", "protocol"):
        train = [(p, f, True) for p, f in zip(protocol.train, protocol.train_family, strict=True)]
        ranges = {
            k: (min(p[k] for p in protocol.train), max(p[k] for p in protocol.train))
            for k in protocol.train[0]
        }
        adapt = [
            (p, f, all(ranges[k][0] <= v <= ranges[k][1] for k, v in p.items()))
            for p, f in zip(protocol.adapt, protocol.adapt_family, strict=True)
        ]
        return train, adapt, max(protocol.train_family) + 1

    names = list(system.varied)
    ref = np.array([system.reference[k] for k in names])
    factors = grid_factors(int(spec.get("envs_per_family", 5)), len(names))
    train = [
        ({k: r * f for k, r, f in zip(names, ref, fs, strict=True)}, 0, True) for fs in factors
    ]
    low = min(min(fs) for fs in factors)
    high = max(max(fs) for fs in factors)
    adapt = [
        (
            {k: r * a for k, r in zip(names, ref, strict=True)},
            0,
            bool(low - 1e-12 <= a <= high + 1e-12),
        )
        for a in ADAPT_FACTORS
    ]
    return train, adapt, 1
