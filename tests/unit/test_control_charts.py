"""Control-chart classes have the statistics of their recipe (docs/DATASETS.md §5)."""

from __future__ import annotations

import numpy as np


def _series_by_class(control_charts):
    """Whole series: the support part (train / adapt_support) followed by the query part
    (test / adapt_query) of every environment."""
    _, splits, envs, _ = control_charts
    parts = [("train", "test"), ("adapt_support", "adapt_query")]
    X = np.concatenate(
        [np.concatenate([splits[a]["X"], splits[b]["X"]], axis=2) for a, b in parts]
    )[:, 0, :, 0]
    ids = np.concatenate([splits[a]["env_id"] for a, _ in parts])
    t = np.concatenate([splits["train"]["t"][0], splits["test"]["t"][0]])
    assert X.shape[1] == len(t) == 60
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
    # split in time at the default support_fraction 0.5: 30 points fitted, 30 forecast
    assert splits["adapt_support"]["X"].shape == (6 * 35, 1, 30, 1)
    assert splits["adapt_query"]["X"].shape == (6 * 35, 1, 30, 1)
    assert splits["train"]["X"].shape == splits["test"]["X"].shape == (6 * 5, 1, 30, 1)
    np.testing.assert_array_equal(splits["train"]["X"], splits["val"]["X"])
    np.testing.assert_array_equal(splits["train"]["env_id"], splits["test"]["env_id"])
