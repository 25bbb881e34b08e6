"""The `claims` config block: shape and defaults from the schema, names checked at once."""

from __future__ import annotations

import copy

import pytest

from mixer.config import validate_claims_spec, validate_config
from mixer.errors import ConfigError

BASE = {
    "datasets": {
        "lv": {"generator": "ode", "systems": ["lotka_volterra"]},
        "charts": {"generator": "control_charts"},
    },
    "regimes": {"default": {}, "traj1": {"trajectories": 1}, "traj4": {"trajectories": 4}},
    "methods": {
        "mixer": {"learner": "mixer"},
        "moe-gd": {"learner": "moe-gd"},
        "single": {"learner": "single"},
        "coda": {"learner": "coda"},
    },
}
CLAIMS = {
    "data_regime": {"datasets": ["lv"], "regimes": ["traj1", "traj4"], "meta_learners": ["coda"]},
    "scaling": {"dataset": "lv", "regimes": ["traj1", "traj4"]},
    "hierarchy": {"clear": "charts", "blurred": "lv", "methods": ["mixer"]},
}


def config_with(claims: dict) -> dict:
    return {**copy.deepcopy(BASE), "claims": copy.deepcopy(claims)}


def test_no_claims_block_means_every_claim_is_null():
    config = validate_config(copy.deepcopy(BASE))
    assert config["claims"] == {"data_regime": None, "scaling": None, "hierarchy": None}


def test_a_valid_block_gets_its_defaults():
    claims = validate_config(config_with(CLAIMS))["claims"]
    assert claims["data_regime"]["mixer"] == "mixer" and claims["data_regime"]["metric"] == "mse_id"
    assert claims["scaling"]["naive"] == "moe-gd" and claims["scaling"]["metric"] == "rel_mse_id"
    assert claims["hierarchy"]["regime"] == "default"
    assert claims["hierarchy"]["metric"] == "context_kmeans_ari_superclass"


@pytest.mark.parametrize(
    ("claim", "key", "value", "section"),
    [
        ("data_regime", "meta_learners", ["coda", "maml"], "methods"),
        ("data_regime", "mixer", "mixr", "methods"),
        ("data_regime", "regimes", ["traj1", "traj64"], "regimes"),
        ("data_regime", "datasets", ["lv", "glycolytic"], "datasets"),
        ("scaling", "naive", "moe", "methods"),
        ("scaling", "regimes", ["fam10"], "regimes"),
        ("scaling", "dataset", "odebench10a", "datasets"),
        ("hierarchy", "methods", ["mixer-plrnn"], "methods"),
        ("hierarchy", "blurred", "eeg", "datasets"),
        ("hierarchy", "regime", "full", "regimes"),
    ],
)
def test_an_unknown_name_is_rejected_naming_the_key(claim, key, value, section):
    claims = copy.deepcopy(CLAIMS)
    claims[claim][key] = value
    unknown = value[-1] if isinstance(value, list) else value
    with pytest.raises(ConfigError) as err:
        validate_config(config_with(claims))
    message = str(err.value)
    assert message.startswith(f"claims.{claim}.{key}: '{unknown}' is not defined under `{section}`")
    assert all(name in message for name in BASE.get(section, {"default": {}}))  # lists the known


def test_an_unknown_key_and_a_missing_one_are_named():
    claims = copy.deepcopy(CLAIMS)
    claims["scaling"]["families"] = 10
    with pytest.raises(ConfigError, match=r"unknown key 'claims\.scaling\.families'"):
        validate_config(config_with(claims))
    with pytest.raises(ConfigError, match=r"unknown key 'claims\.lineage'"):
        validate_config(config_with({"lineage": None}))
    claims = copy.deepcopy(CLAIMS)
    del claims["hierarchy"]["clear"]
    with pytest.raises(ConfigError, match=r"claims\.hierarchy: 'clear' is a required property"):
        validate_config(config_with(claims))


def test_the_block_alone_is_checked_for_shape_only():
    """`mixer claims` gets the block without the rest of the config: no name can be checked."""
    claims = validate_claims_spec(copy.deepcopy(CLAIMS))
    assert claims["scaling"]["mixer"] == "mixer"
    assert validate_claims_spec({}) == {"data_regime": None, "scaling": None, "hierarchy": None}
    with pytest.raises(ConfigError, match=r"claims\.scaling\.regimes: \[\] should be non-empty"):
        validate_claims_spec({"scaling": {"dataset": "lv", "regimes": []}})
