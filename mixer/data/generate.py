"""Dataset generators, by name: each turns a validated dataset spec into splits and metadata.

A generator returns ``(splits, environments, extra_meta)`` where ``splits`` maps a split name
to ``{"X": [E, N, T, d] float64, "t": [E, T] float64, "env_id": [E] int64}`` and
``environments`` is the list of per-environment metadata dicts.
"""

from __future__ import annotations

import numpy as np

from mixer.data.design import design_environments
from mixer.data.integrate import integrate
from mixer.data.systems import resolve_system
from mixer.errors import ConfigError, GenerationError
from mixer.registry import Registry

# split -> role of the environments it holds
SPLITS = {
    "train": "train",
    "val": "train",
    "test": "train",
    "adapt_support": "adapt",
    "adapt_query": "adapt",
}
MAX_RESAMPLING_ROUNDS = 50
# Labelled series (control charts, EEG) are split in time: what each split holds.
SERIES_PARTS = {
    "train": "support",
    "val": "support",
    "test": "query",
    "adapt_support": "support",
    "adapt_query": "query",
}
SUPPORT_FRACTION = 0.5  # default of the dataset key `support_fraction`
MIN_PART_SAMPLES = 2

# Dataset builders: spec -> (splits, environments, extra metadata). A user's own is named in
# the config as ``package.module:function``.
GENERATORS = Registry(
    "generator", None, ("mixer.data.generate", "mixer.data.control_charts", "mixer.data.eeg")
)
register_generator = GENERATORS.register


def generate(spec: dict) -> tuple[dict, list[dict], dict]:
    return GENERATORS.get(spec["generator"])(spec)


def split_stream(seed: int, split: str, env_id: int) -> np.random.Generator:
    """The initial-condition stream of one environment in one split.

    Streams of different splits (and environments) are independent children of the dataset
    seed, so no split reuses another's initial conditions and adding an environment does not
    change the draws of the others.
    """
    split_index = list(SPLITS).index(split)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, env_id)))


@register_generator("ode")
def generate_ode(spec: dict):
    if not spec.get("systems"):
        raise ConfigError("generator 'ode' needs a non-empty `systems` list")
    systems = [resolve_system(name) for name in spec["systems"]]
    envs = design_environments(systems, spec)
    counts = spec["trajectories"]
    splits, resampled = {}, {}
    for split, role in SPLITS.items():
        members = [e for e in envs if e.role == role]
        if not members:
            raise ConfigError(f"dataset has no '{role}' environments for split '{split}'")
        grids = {e.system.name: e.system.time_grid() for e in members}
        if len({len(g) for g in grids.values()}) > 1:
            raise ConfigError(
                "systems of one dataset must share the number of time points; got "
                + ", ".join(f"{k}: {len(g)}" for k, g in grids.items())
            )
        blocks = []
        for system_name in dict.fromkeys(e.system.name for e in members):
            group = [e for e in members if e.system.name == system_name]
            block, n_redrawn = _trajectories(group, counts[split], spec["seed"], split)
            blocks.append(block)
            resampled[system_name] = resampled.get(system_name, 0) + n_redrawn
        dims = {b.shape[-1] for b in blocks}
        if len(dims) > 1:
            raise ConfigError(f"systems of one dataset must share the state dimension; got {dims}")
        X = np.concatenate(blocks, axis=0)
        splits[split] = {
            "X": X,
            "t": np.stack([grids[e.system.name] for e in members]),
            "env_id": np.array([e.id for e in members], dtype=np.int64),
        }
    extra = {"resampled_initial_conditions": resampled}
    return splits, [e.to_json() for e in envs], extra


def _trajectories(group, n_traj, seed, split):
    """[len(group), n_traj, T, d] for environments of one system; counts resampled ICs."""
    system = group[0].system
    low, high = np.asarray(system.ic_low), np.asarray(system.ic_high)
    streams = [split_stream(seed, split, e.id) for e in group]
    y0 = np.stack([rng.uniform(low, high, size=(n_traj, system.state_dim)) for rng in streams])
    params = {
        k: np.repeat([e.params[k] for e in group], n_traj).astype(np.float64)
        for k in system.reference
    }
    t = system.time_grid()
    flat_y0 = y0.reshape(-1, system.state_dim)
    X = integrate(system, flat_y0, params, t)
    bad = ~system.admissible(X)
    redrawn = 0
    for _ in range(MAX_RESAMPLING_ROUNDS):
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        redrawn += len(idx)
        for i in idx:  # a redraw comes from the stream of the trajectory's own environment
            flat_y0[i] = streams[i // n_traj].uniform(low, high)
        sub = integrate(system, flat_y0[idx], {k: v[idx] for k, v in params.items()}, t)
        X[idx] = sub
        bad[idx] = ~system.admissible(sub)
    if bad.any():
        raise GenerationError(
            f"system '{system.name}', split '{split}': {int(bad.sum())} trajectories still "
            f"not admissible after {MAX_RESAMPLING_ROUNDS} rounds of resampling. "
            "Fix: narrow the system's initial-condition box or shorten its horizon."
        )
    return X.reshape(len(group), n_traj, len(t), system.state_dim), redrawn


def series_support_length(n_times: int, support_fraction) -> int:
    """T_s = round(support_fraction x T), the support part's length (at least 2 samples on
    each side of the split); a clear ``ConfigError`` naming ``support_fraction`` otherwise."""
    valid = isinstance(support_fraction, int | float) and not isinstance(support_fraction, bool)
    if not valid or not 0 < support_fraction < 1:
        raise ConfigError(
            f"support_fraction must be a number strictly between 0 and 1 (the share of every "
            f"series its support part holds); got {support_fraction!r}"
        )
    support = round(support_fraction * n_times)
    if min(support, n_times - support) < MIN_PART_SAMPLES:
        low, high = MIN_PART_SAMPLES / n_times, 1 - MIN_PART_SAMPLES / n_times
        raise ConfigError(
            f"support_fraction = {support_fraction} splits series of {n_times} samples into "
            f"{support} support and {n_times - support} query samples; each part needs at "
            f"least {MIN_PART_SAMPLES}. Fix: set support_fraction between {low:.3g} and "
            f"{high:.3g} (or use longer series)."
        )
    return support


def split_series(values: np.ndarray, t: np.ndarray, envs: list[dict], support_fraction):
    """The five splits of labelled series, split in time (docs/METHOD.md §5).

    ``values`` [E, T, d] holds one series per environment (row i is environment ``envs[i]``,
    whose ``id`` is i) on the common grid ``t`` [T]. With T_s = round(support_fraction x T),
    the support part is samples [0, T_s) and the query part [T_s, T), on its own grid
    t[T_s:] that continues the times: every query sample lies strictly after every support
    sample of its series. Training series give ``train`` and ``val`` (their support part:
    a recorded series has no fresh initial conditions, so validation can only re-use what
    training fits) and ``test`` (their query part: the in-domain forecast of unseen time);
    adaptation series give ``adapt_support`` and ``adapt_query``. Each split holds one
    trajectory per environment.

    Returns ``(splits, record)``; ``record`` (for meta.json, key ``series_split``) gives the
    fraction, both lengths and what each split holds.
    """
    values, t = np.asarray(values, dtype=np.float64), np.asarray(t, dtype=np.float64)
    n_times = values.shape[1]
    if t.shape != (n_times,):
        raise ValueError(f"t {t.shape} must be [T] with T = {n_times}")
    if [e["id"] for e in envs] != list(range(len(values))):
        raise ValueError("environment ids must be 0..E-1, the rows of `values`")
    support = series_support_length(n_times, support_fraction)
    parts = {"support": slice(0, support), "query": slice(support, n_times)}
    splits = {}
    for split, role in SPLITS.items():
        ids = np.array([e["id"] for e in envs if e["role"] == role], dtype=np.int64)
        window = parts[SERIES_PARTS[split]]
        splits[split] = {
            "X": values[ids][:, None, window].copy(),
            "t": np.tile(t[window], (len(ids), 1)),
            "env_id": ids,
        }
    record = {
        "support_fraction": float(support_fraction),
        "support_length": support,
        "query_length": n_times - support,
        "parts": dict(SERIES_PARTS),
    }
    return splits, record
