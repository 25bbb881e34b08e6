"""Synthetic control charts (Alcock & Manolopoulos 1999; docs/DATASETS.md §5).

Six classes in three super-classes; every series is one environment with one trajectory of
60 points (d = 1) on t = 1..60. Series are scored on what they did not see (docs/METHOD.md §5):
every series is split in time at T_s = round(support_fraction x 60) (dataset key
``support_fraction``, default 0.5). Training series give ``train`` and ``val`` (their first
T_s points: a series has no fresh initial conditions to draw, so validation re-uses the
training part, the only honest option) and ``test`` (their remaining points, t = T_s+1..60:
the in-domain forecast of unseen time); the remaining series give ``adapt_support`` (first
part, which a learner adapts to and which is then classified from its context) and
``adapt_query`` (the rest, the forecast that is scored). ``meta.json`` records the split
(``series_split``).
"""

from __future__ import annotations

import numpy as np

from mixer.data.generate import SUPPORT_FRACTION, register_generator, split_series
from mixer.errors import ConfigError

MEAN, SCALE, LENGTH = 30.0, 2.0, 60
CLASSES = (
    ("normal", "stationary"),
    ("cyclic", "stationary"),
    ("increasing_trend", "rising"),
    ("decreasing_trend", "falling"),
    ("upward_shift", "rising"),
    ("downward_shift", "falling"),
)
SUPERCLASSES = ("stationary", "rising", "falling")


def control_chart_series(label: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One series of class ``label`` and the parameters drawn for it."""
    t = np.arange(1, LENGTH + 1, dtype=np.float64)
    y = MEAN + rng.uniform(-3.0, 3.0, size=LENGTH) * SCALE
    params = {"m": MEAN, "s": SCALE}
    if label == "cyclic":
        a, period = rng.uniform(10, 15), rng.uniform(10, 15)
        y = y + a * np.sin(2 * np.pi * t / period)
        params |= {"a": a, "P": period}
    elif label in ("increasing_trend", "decreasing_trend"):
        g = rng.uniform(0.2, 0.5)
        y = y + (g if label == "increasing_trend" else -g) * t
        params |= {"g": g}
    elif label in ("upward_shift", "downward_shift"):
        x, t0 = rng.uniform(7.5, 20), rng.uniform(20, 40)
        y = y + (x if label == "upward_shift" else -x) * (t >= t0)
        params |= {"x": x, "t0": t0}
    elif label != "normal":
        raise ValueError(f"unknown control-chart class '{label}'")
    return y, {k: float(v) for k, v in params.items()}


@register_generator("control_charts")
def generate_control_charts(spec: dict):
    per_class, n_train = spec["series_per_class"], spec["train_per_class"]
    if not 0 < n_train < per_class:
        raise ConfigError(
            f"train_per_class ({n_train}) must be between 1 and series_per_class - 1 "
            f"({per_class - 1}) so that series remain to adapt to"
        )
    series = {"train": [], "adapt": []}
    for class_index, (label, superclass) in enumerate(CLASSES):
        for i in range(per_class):
            rng = np.random.default_rng(
                np.random.SeedSequence(spec["seed"], spawn_key=(class_index, i))
            )
            y, params = control_chart_series(label, rng)
            role = "train" if i < n_train else "adapt"
            series[role].append((label, class_index, superclass, params, y))
    envs, values = [], []
    for role in ("train", "adapt"):
        for label, class_index, superclass, params, y in series[role]:
            envs.append(
                {
                    "id": len(envs),
                    "family": label,
                    "family_index": class_index,
                    "superclass": superclass,
                    "superclass_index": SUPERCLASSES.index(superclass),
                    "params": params,
                    "role": role,
                    "in_training_range": True,
                }
            )
            values.append(y)
    t = np.arange(1, LENGTH + 1, dtype=np.float64)
    fraction = spec.get("support_fraction", SUPPORT_FRACTION)
    splits, record = split_series(np.asarray(values)[:, :, None], t, envs, fraction)
    extra = {
        "classes": [c for c, _ in CLASSES],
        "superclasses": list(SUPERCLASSES),
        "series_split": record,
    }
    return splits, envs, extra
