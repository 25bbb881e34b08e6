"""Environment design, splits and seeding follow docs/DATASETS.md."""

from __future__ import annotations

import numpy as np
import pytest

from mixer.data import SPLITS, generate
from mixer.data.design import grid_factors
from mixer.errors import ConfigError
from tests.helpers import SMALL_TRAJECTORIES, make_spec


def test_lotka_volterra_protocol(lotka_volterra):
    _, splits, envs, _ = lotka_volterra
    train = [e for e in envs if e["role"] == "train"]
    adapt = [e for e in envs if e["role"] == "adapt"]
    assert len(train) == 9 and len(adapt) == 4
    assert {(e["params"]["beta"], e["params"]["delta"]) for e in train} == {
        (b, d) for b in (0.5, 0.75, 1.0) for d in (0.5, 0.75, 1.0)
    }
    # families are the three values of delta
    for e in train:
        assert e["family_index"] == [0.5, 0.75, 1.0].index(e["params"]["delta"])
    assert all(e["params"]["alpha"] == 0.5 and e["params"]["gamma"] == 0.5 for e in envs)
    inside = {(e["params"]["beta"], e["params"]["delta"]) for e in adapt if e["in_training_range"]}
    assert inside == {(0.625, 0.625)}
    np.testing.assert_allclose(splits["train"]["t"][0], np.arange(20) * 0.5)
    assert splits["train"]["X"].shape == (9, 4, 20, 2)
    assert splits["test"]["X"].shape == (9, 32, 20, 2)
    assert splits["adapt_query"]["X"].shape == (4, 32, 20, 2)


def test_selkov_and_glycolytic_protocols():
    selkov = generate(
        make_spec(generator="ode", systems=["selkov"], trajectories=SMALL_TRAJECTORIES)
    )
    envs = selkov[1]
    train_b = [e["params"]["b"] for e in envs if e["role"] == "train"]
    assert len(train_b) == 21
    np.testing.assert_allclose(train_b[:7], np.linspace(-1, -0.25, 7))
    assert [e["family_index"] for e in envs if e["role"] == "train"] == [0] * 7 + [1] * 7 + [2] * 7
    adapt = {e["params"]["b"]: e["in_training_range"] for e in envs if e["role"] == "adapt"}
    assert adapt == {-1.25: False, -0.65: True, -0.05: True, 0.02: True, 0.6: True, 1.2: False}
    assert selkov[0]["train"]["t"].shape[1] == 11

    gly = generate(
        make_spec(generator="ode", systems=["glycolytic"], trajectories=SMALL_TRAJECTORIES)
    )
    assert gly[0]["train"]["X"].shape[-1] == 7
    k1 = sorted({e["params"]["k1"] for e in gly[1] if e["role"] == "train"})
    assert k1 == [80.0, 90.0, 100.0]


def test_grid_factors_have_no_duplicates_and_span_the_range():
    plus = grid_factors(5, 2)  # ODEBench 10A with two parameters
    assert len(set(plus)) == 5
    assert (1.0, 1.0) in plus and (0.9, 1.0) in plus and (1.1, 1.0) in plus
    square = grid_factors(16, 2)  # 10B
    assert len(set(square)) == 16
    assert min(min(p) for p in square) == 0.9 and max(max(p) for p in square) == 1.1
    np.testing.assert_allclose([p[0] for p in grid_factors(5, 1)], np.linspace(0.9, 1.1, 5))


def test_odebench_environments(odebench10):
    _, splits, envs, _ = odebench10
    train = [e for e in envs if e["role"] == "train"]
    adapt = [e for e in envs if e["role"] == "adapt"]
    assert len(train) == 50 and len(adapt) == 40
    keys = [(e["family"], tuple(sorted(e["params"].items()))) for e in envs]
    assert len(set(keys)) == len(keys), "duplicate environments"
    assert sorted({e["family_index"] for e in envs}) == list(range(10))
    for family in range(10):
        flags = [e["in_training_range"] for e in adapt if e["family_index"] == family]
        assert flags == [False, True, True, False]
    # each family on its own horizon: 20 points over [0, T)
    harmonic = [
        i for i, e in enumerate(splits["train"]["env_id"]) if envs[e]["family"] == "pendulum"
    ]
    np.testing.assert_allclose(splits["train"]["t"][harmonic[0]], np.arange(20) * 15.0 / 20)


def test_adapt_support_and_query_hold_the_same_environments(odebench10, lotka_volterra):
    for _, splits, _, _ in (odebench10, lotka_volterra):
        np.testing.assert_array_equal(
            splits["adapt_support"]["env_id"], splits["adapt_query"]["env_id"]
        )


def test_no_initial_condition_shared_between_splits(odebench10):
    _, splits, _, _ = odebench10
    seen = {}
    for split in SPLITS:
        for row in splits[split]["X"][:, :, 0, :].reshape(-1, 2):
            key = row.tobytes()
            assert key not in seen, f"initial condition shared by {seen.get(key)} and {split}"
            seen[key] = split


def test_same_seed_same_hash_other_seed_other_initial_conditions(tmp_path):
    from tests.helpers import build

    class Factory:  # a tmp_path_factory stand-in
        def mktemp(self, name):
            path = tmp_path / name
            path.mkdir()
            return path

    entry = dict(generator="ode", systems=["pendulum", "duffing"], trajectories=SMALL_TRAJECTORIES)
    _, a, _, meta_a = build(Factory(), "a", seed=3, **entry)
    _, _, _, meta_b = build(Factory(), "b", seed=3, **entry)
    _, c, _, meta_c = build(Factory(), "c", seed=4, **entry)
    assert meta_a["content_hash"] == meta_b["content_hash"]
    assert meta_a["content_hash"] != meta_c["content_hash"]
    x0_a, x0_c = a["train"]["X"][:, :, 0], c["train"]["X"][:, :, 0]
    assert not np.isclose(x0_a, x0_c).any()


def test_n_families_keeps_the_first_families():
    spec = make_spec(
        generator="ode",
        systems=["harmonic_oscillator", "pendulum", "duffing"],
        n_families=2,
        trajectories=SMALL_TRAJECTORIES,
    )
    _, envs, _ = generate(spec)
    assert {e["family"] for e in envs} == {"harmonic_oscillator", "pendulum"}
    with pytest.raises(ConfigError, match="n_families = 4"):
        generate(make_spec(generator="ode", systems=["pendulum"], n_families=4))


def test_trajectories_per_split_is_a_regime_knob():
    spec = make_spec(
        generator="ode",
        systems=["pendulum"],
        envs_per_family=3,
        trajectories={"train": 1, "test": 2, "adapt_query": 2},
    )
    splits, _, _ = generate(spec)
    assert splits["train"]["X"].shape[:2] == (3, 1)
    assert splits["val"]["X"].shape[:2] == (3, 4)  # default
    assert splits["adapt_query"]["X"].shape[:2] == (4, 2)
