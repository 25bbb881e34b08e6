"""The loader validates what it reads; bad input fails with one message naming key or file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mixer.config import validate_config
from mixer.data import load_dataset, resolve_system
from mixer.errors import ConfigError, DatasetError


def test_roundtrip(lotka_volterra):
    path, splits, _, meta = lotka_volterra
    ds = load_dataset(path)
    assert ds.meta["content_hash"] == meta["content_hash"]
    for split, arrays in splits.items():
        np.testing.assert_array_equal(ds[split].X, arrays["X"])
        assert ds[split].X.dtype == np.float64 and ds[split].env_id.dtype == np.int64
    assert ds.environments[0]["family"] == "lotka_volterra"


@pytest.fixture
def copy_of(tmp_path, lotka_volterra):
    target = tmp_path / "lv"
    shutil.copytree(lotka_volterra[0], target)
    return target


def test_truncated_npz_names_the_file(copy_of):
    file = copy_of / "test.npz"
    file.write_bytes(file.read_bytes()[:500])
    with pytest.raises(DatasetError, match=r"test\.npz: corrupt or truncated"):
        load_dataset(copy_of)


def test_missing_file_names_the_file_and_the_fix(copy_of):
    (copy_of / "val.npz").unlink()
    with pytest.raises(DatasetError, match=r"val\.npz: missing\. Fix: regenerate"):
        load_dataset(copy_of)


def test_hash_mismatch_names_meta_json(copy_of):
    meta = json.loads((copy_of / "meta.json").read_text())
    meta["environments"][0]["params"]["beta"] = 0.51
    (copy_of / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"meta\.json: content hash does not match"):
        load_dataset(copy_of)


def test_wrong_dtype_and_non_finite_are_rejected(copy_of):
    with np.load(copy_of / "train.npz") as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(copy_of / "train.npz", **{**arrays, "X": arrays["X"].astype(np.float32)})
    with pytest.raises(DatasetError, match=r"train\.npz: X must be float64"):
        load_dataset(copy_of)
    bad = arrays["X"].copy()
    bad[0, 0, 3, 1] = np.nan
    np.savez(copy_of / "train.npz", **{**arrays, "X": bad})
    with pytest.raises(DatasetError, match=r"train\.npz: 1 non-finite"):
        load_dataset(copy_of)


def test_environment_of_the_wrong_role_is_rejected(copy_of):
    with np.load(copy_of / "adapt_query.npz") as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(copy_of / "adapt_query.npz", **{**arrays, "env_id": arrays["env_id"] - 4})
    with pytest.raises(DatasetError, match="are not 'adapt' environments"):
        load_dataset(copy_of)


def test_unknown_config_key_is_named():
    config = {"datasets": {"lv": {"generator": "ode", "systems": ["lotka_volterra"], "sedd": 1}}}
    with pytest.raises(ConfigError, match=r"unknown key 'datasets\.lv\.sedd'; allowed keys here"):
        validate_config(config)
    with pytest.raises(ConfigError, match=r"unknown key 'dataset'"):
        validate_config({"dataset": {}})


def test_wrong_type_is_named():
    config = {
        "datasets": {"lv": {"generator": "ode", "systems": ["lotka_volterra"], "seed": "one"}}
    }
    with pytest.raises(ConfigError, match=r"datasets\.lv\.seed: 'one' has the wrong type"):
        validate_config(config)
    config = {"datasets": {"lv": {"generator": "sde"}}}
    with pytest.raises(
        ConfigError,
        match=r"datasets\.lv\.generator: unknown generator 'sde'\. Valid names: ode, contr",
    ):
        validate_config(config)


def test_defaults_are_filled():
    config = validate_config({"datasets": {"lv": {"generator": "ode", "systems": ["selkov"]}}})
    entry = config["datasets"]["lv"]
    assert entry["seed"] == 0 and entry["design"] == "auto" and entry["envs_per_family"] == 5
    assert entry["trajectories"] == {
        "train": 4,
        "val": 4,
        "test": 32,
        "adapt_support": 1,
        "adapt_query": 32,
    }


def test_unknown_system_lists_the_valid_names():
    with pytest.raises(ConfigError, match=r"unknown system 'lorenz'\. Valid names: .*duffing"):
        resolve_system("lorenz")
    config = {"datasets": {"x": {"generator": "ode", "systems": ["lorenz"]}}}
    with pytest.raises(ConfigError, match=r"datasets\.x\.systems: unknown system 'lorenz'"):
        validate_config(config)
    with pytest.raises(ConfigError, match="cannot import module 'nowhere'"):
        resolve_system("nowhere:Thing")


def test_default_config_is_valid():
    from mixer.config import load_config

    config = load_config("config/config.yaml")
    assert {
        "lotka_volterra",
        "glycolytic",
        "selkov",
        "odebench10a",
        "odebench10b",
        "control_charts",
    } <= set(config["datasets"])


def test_conda_env_pins_equal_requirements():
    import yaml

    reqs = {
        line.strip()
        for line in open("requirements.txt")
        if line.strip() and not line.startswith("#")
    }
    env = yaml.safe_load(open("workflow/envs/mixer.yaml"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if "==" in p} == reqs
