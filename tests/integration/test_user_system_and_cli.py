"""A user adds a family with one class and one config entry; the CLI generates datasets."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from mixer.cli import main
from mixer.data import load_dataset

USER_MODULE = """
import numpy as np
from mixer.data import ODESystem

class Brusselator(ODESystem):
    name = "brusselator_test"
    state_dim = 2
    reference = {"a": 1.0, "b": 3.0}
    varied = ("a", "b")
    ic_low, ic_high = (0.5, 0.5), (2.0, 2.0)
    dt, n_points = 0.5, 20

    def vector_field(self, y, p):
        x, v = y[..., 0], y[..., 1]
        return np.stack([p["a"] + x * x * v - (p["b"] + 1) * x, p["b"] * x - x * x * v], axis=-1)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_families.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_families:Brusselator"
    sys.modules.pop("my_families", None)


def test_user_system_from_config(tmp_path, user_module):
    config = tmp_path / "config.yaml"
    config.write_text(
        "datasets:\n"
        "  bruss:\n"
        "    generator: ode\n"
        f"    systems: ['{user_module}']\n"
        "    envs_per_family: 4\n"
        "    trajectories: {train: 2, val: 1, test: 2, adapt_query: 2}\n"
    )
    out = tmp_path / "bruss"
    assert main(["generate", "--config", str(config), "--dataset", "bruss", "--out", str(out)]) == 0
    ds = load_dataset(out)
    assert ds["train"].X.shape == (4, 2, 20, 2)
    assert {e["family"] for e in ds.meta["environments"]} == {"brusselator_test"}
    train = [e["params"] for e in ds.meta["environments"] if e["role"] == "train"]
    pairs = sorted((p["a"], p["b"]) for p in train)  # a 2 x 2 grid over [0.9, 1.1] x reference
    np.testing.assert_allclose(pairs, [(0.9, 2.7), (0.9, 3.3), (1.1, 2.7), (1.1, 3.3)])
    assert np.isfinite(ds["test"].X).all()


def test_cli_spec_and_clear_errors(tmp_path, capsys):
    out = tmp_path / "lv"
    spec = '{"generator": "ode", "systems": ["lotka_volterra"], "trajectories": {"test": 2}}'
    assert main(["generate", "--dataset", "lv", "--spec", spec, "--out", str(out)]) == 0
    generated = load_dataset(out)
    assert generated["test"].X.shape == (9, 2, 20, 2)
    # The EEG generators preprocess with MNE, so its version is part of a dataset's provenance.
    assert set(generated.meta["provenance"]["versions"]) >= {"numpy", "scipy", "mne"}

    bad = '{"generator": "ode", "systems": ["lotka_volterra"], "envs_per_familly": 3}'
    assert main(["generate", "--dataset", "lv", "--spec", bad, "--out", str(out)]) == 2
    assert "unknown key 'datasets.lv.envs_per_familly'" in capsys.readouterr().err

    missing = tmp_path / "nope.yaml"
    assert main(["generate", "--config", str(missing), "--dataset", "lv", "--out", str(out)]) == 2
    assert "nope.yaml not found" in capsys.readouterr().err
