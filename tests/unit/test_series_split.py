"""Labelled series are scored on what they did not see (docs/METHOD.md §5): every control chart and
EEG segment is split in time, contexts are fitted on the first part and the rest is forecast."""

from __future__ import annotations

import numpy as np
import pytest

from mixer.data import generate, load_dataset
from mixer.data.control_charts import CLASSES, control_chart_series
from mixer.data.eeg_preprocess import preprocess
from mixer.data.eeg_sources import load_sources
from mixer.errors import ConfigError
from tests.helpers import make_spec
from tests.unit.test_eeg import fake_wheel, signals, ts_text

# (support split, query split) of the two roles
PAIRS = {"train": ("train", "test"), "adapt": ("adapt_support", "adapt_query")}


def charts_spec(**extra):
    # support_fraction is merged after validation, so that these tests run with and without
    # the key in the schema.
    spec = make_spec(generator="control_charts", series_per_class=6, train_per_class=2)
    return {**spec, **extra}


def eeg_spec(tmp_path, **extra):
    wheel = tmp_path / "fake.whl"
    if not wheel.exists():
        fake_wheel(wheel, {"Fake": (128, ["Fz", "Cz"], 256, 5)})
    spec = make_spec(generator="eeg", wheel=str(wheel), problems=["Fake"], resample=32, n_times=40)
    return {**spec, "train_per_class": 2, "max_adapt_per_class": 4, **extra}


def pieces(splits, envs):
    """Per environment id: (support t, support X, query t, query X) of its one series."""
    out = {}
    for role, (first, rest) in PAIRS.items():
        np.testing.assert_array_equal(splits[first]["env_id"], splits[rest]["env_id"])
        for row, env_id in enumerate(splits[first]["env_id"]):
            assert envs[env_id]["role"] == role
            out[int(env_id)] = (
                splits[first]["t"][row],
                splits[first]["X"][row, 0],
                splits[rest]["t"][row],
                splits[rest]["X"][row, 0],
            )
    assert sorted(out) == [e["id"] for e in envs]
    return out


def check_query_after_support(splits, envs, n_times, n_support):
    by_env = pieces(splits, envs)
    for t_s, x_s, t_q, x_q in by_env.values():
        assert len(t_s) == len(x_s) == n_support and len(t_q) == len(x_q) == n_times - n_support
        assert t_q.min() > t_s.max()  # strictly after, for every environment
        step = np.diff(np.concatenate([t_s, t_q]))
        np.testing.assert_allclose(step, step[0])  # the query grid continues the support's
    np.testing.assert_array_equal(splits["train"]["X"], splits["val"]["X"])
    return by_env


def test_control_chart_query_is_the_series_continuation_after_its_support():
    spec = charts_spec()
    splits, envs, extra = generate(spec)
    by_env = check_query_after_support(splits, envs, 60, 30)
    # the original series, drawn as the generator draws them (training series first)
    originals = {"train": [], "adapt": []}
    for class_index, (label, _) in enumerate(CLASSES):
        for i in range(spec["series_per_class"]):
            seed = np.random.SeedSequence(spec["seed"], spawn_key=(class_index, i))
            y, _ = control_chart_series(label, np.random.default_rng(seed))
            originals["train" if i < spec["train_per_class"] else "adapt"].append(y)
    whole = originals["train"] + originals["adapt"]
    for env_id, (t_s, x_s, t_q, x_q) in by_env.items():
        np.testing.assert_array_equal(t_s, np.arange(1, 31))
        np.testing.assert_array_equal(t_q, np.arange(31, 61))
        np.testing.assert_array_equal(x_s[:, 0], whole[env_id][:30])
        np.testing.assert_array_equal(x_q[:, 0], whole[env_id][30:])
    assert extra["series_split"] | {"parts": None} == {
        "support_fraction": 0.5,
        "support_length": 30,
        "query_length": 30,
        "parts": None,
    }


def test_eeg_query_is_the_segment_continuation_after_its_support(tmp_path):
    spec = eeg_spec(tmp_path)
    splits, envs, extra = generate(spec)
    by_env = check_query_after_support(splits, envs, 40, 20)
    # The whole preprocessed segment, z-scored over all of it (support_samples=None): the
    # series joined back and standardised over its length must be that segment.
    (source,) = load_sources(spec)
    z_whole, cases, _ = preprocess(source, spec)
    for env_id, (t_s, x_s, t_q, x_q) in by_env.items():
        np.testing.assert_allclose(t_s, np.arange(20) / 32)
        np.testing.assert_allclose(t_q, np.arange(20, 40) / 32)
        joined = np.concatenate([x_s, x_q])  # [T, C]
        standard = (joined - joined.mean(axis=0)) / joined.std(axis=0)
        segment = z_whole[list(cases).index(envs[env_id]["case"])].T
        np.testing.assert_allclose(standard, segment, atol=1e-10)
        # z-scored with the support part's statistics only: nothing of the query leaks in
        np.testing.assert_allclose(x_s.mean(axis=0), 0, atol=1e-10)
        np.testing.assert_allclose(x_s.std(axis=0), 1, atol=1e-10)
    assert extra["series_split"]["support_length"] == 20
    assert extra["segments"]["Fake"]["info"]["z_score_samples"] == 20


@pytest.mark.parametrize(("fraction", "n_support"), [(0.25, 15), (0.5, 30), (0.8, 48)])
def test_support_fraction_sets_the_split_point(fraction, n_support):
    splits, envs, extra = generate(charts_spec(support_fraction=fraction))
    check_query_after_support(splits, envs, 60, n_support)
    assert extra["series_split"]["support_fraction"] == fraction
    assert extra["series_split"]["support_length"] == n_support
    assert extra["series_split"]["query_length"] == 60 - n_support


def test_support_fraction_sets_the_eeg_split_point(tmp_path):
    splits, envs, extra = generate(eeg_spec(tmp_path, support_fraction=0.25))
    check_query_after_support(splits, envs, 40, 10)
    assert extra["series_split"]["support_length"] == 10


@pytest.mark.parametrize("fraction", [0.01, 0.99, 0.0, 1.0, -0.5, "half", True])
def test_bad_support_fraction_is_a_clear_error(fraction):
    with pytest.raises(ConfigError, match="support_fraction") as err:
        generate(charts_spec(support_fraction=fraction))
    if fraction == 0.01:
        assert "60 samples into 1 support and 59 query samples" in str(err.value)
        assert "between 0.0333 and 0.967" in str(err.value)


def test_bad_eeg_support_fraction_is_reported_before_reading(tmp_path):
    spec = eeg_spec(tmp_path, support_fraction=0.01, wheel=str(tmp_path / "absent.whl"))
    with pytest.raises(ConfigError, match=r"support_fraction = 0\.01 splits series of 40"):
        generate(spec)


def test_a_channel_flat_in_its_support_part_is_dropped(tmp_path):
    cases = signals(np.random.default_rng(8), 10, 2, 64, 64)
    cases[3, 1, :32] = 2.0  # flat where it would be z-scored, alive afterwards
    path = tmp_path / "half_TRAIN.ts"
    path.write_text(ts_text(cases, ["p", "q"] * 5))
    entry = dict(source="ts", paths=[str(path)], sfreq=64, l_freq=None, h_freq=None)
    spec = make_spec(generator="eeg", **entry, resample=None, n_times=64, train_per_class=2)
    splits, envs, extra = generate(spec)
    assert extra["segments"]["half"]["dropped_flat"] == 1
    assert 3 not in {e["case"] for e in envs}
    assert all(np.isfinite(splits[s]["X"]).all() for s in splits)


def test_saved_dataset_records_the_split_and_loads(control_charts):
    path, _, _, meta = control_charts
    assert meta["series_split"]["support_length"] == 30
    assert meta["splits"]["train"] == [30, 1, 30, 1]
    assert meta["splits"]["adapt_query"] == [210, 1, 30, 1]
    dataset = load_dataset(path)
    check_query_after_support(
        {k: vars(v) for k, v in dataset.splits.items()}, dataset.meta["environments"], 60, 30
    )
