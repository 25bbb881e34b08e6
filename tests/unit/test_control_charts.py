"""Control-chart classes have the statistics of their recipe (DATASETS.md §5)."""

from __future__ import annotations

import numpy as np


def _series_by_class(control_charts):
    _, splits, envs, _ = control_charts
    X = np.concatenate([splits["train"]["X"], splits["adapt_support"]["X"]])[:, 0, :, 0]
    ids = np.concatenate([splits["train"]["env_id"], splits["adapt_support"]["env_id"]])
    t = splits["train"]["t"][0]
    by_class = {}
    for row, env_id in zip(X, ids, strict=True):
        env = envs[env_id]
        by_class.setdefault(env["family"], []).append((row, env))
    return t, by_class


def test_classes_follow_their_recipe(control_charts):
    t, by_class = _series_by_class(control_charts)
    assert sorted(by_class) == sorted(
        [
            "normal",
            "cyclic",
            "increasing_trend",
            "decreasing_trend",
            "upward_shift",
            "downward_shift",
        ]
    )
    slope = {c: np.array([np.polyfit(t, y, 1)[0] for y, _ in rows]) for c, rows in by_class.items()}
    assert (slope["increasing_trend"] > 0.1).all() and (slope["decreasing_trend"] < -0.1).all()
    assert (np.abs(slope["normal"]) < 0.1).all()
    for label, sign in (("upward_shift", 1), ("downward_shift", -1)):
        for y, env in by_class[label]:
            after, before = y[t >= env["params"]["t0"]].mean(), y[t < env["params"]["t0"]].mean()
            # the step is x in [7.5, 20]; the noise mean over >= 20 points is well under 3
            assert sign * (after - before) > env["params"]["x"] - 3.0
    for y, _ in by_class["normal"]:
        assert abs(y.mean() - 30.0) < 1.5 and y.min() >= 24.0 and y.max() <= 36.0
    cyclic_sd = np.mean([y.std() for y, _ in by_class["cyclic"]])
    normal_sd = np.mean([y.std() for y, _ in by_class["normal"]])
    assert cyclic_sd > 2 * normal_sd


def test_superclasses_and_balanced_splits(control_charts):
    _, splits, envs, _ = control_charts
    super_of = {e["family"]: e["superclass"] for e in envs}
    assert super_of["normal"] == super_of["cyclic"] == "stationary"
    assert super_of["increasing_trend"] == super_of["upward_shift"] == "rising"
    assert super_of["decreasing_trend"] == super_of["downward_shift"] == "falling"
    train_labels = [envs[i]["family_index"] for i in splits["train"]["env_id"]]
    assert np.bincount(train_labels).tolist() == [5] * 6
    assert splits["adapt_support"]["X"].shape == (6 * 35, 1, 60, 1)
    np.testing.assert_array_equal(splits["train"]["X"], splits["test"]["X"])
