"""Shared fixtures: small generated datasets, built once per test session."""

from __future__ import annotations

import pytest

from mixer.data.odebench import ODEBENCH10
from tests.helpers import SMALL_TRAJECTORIES, build


@pytest.fixture(params=["stacked", "per-environment"])
def layer_form(request, monkeypatch):
    """Run a test with the wide layers of the GEPS and CoDA banks in each of their two forms
    (grouped products of the experts' stacked maps, or per-environment weights), whatever
    the banks' size thresholds would pick for the test's small networks."""
    from mixer.models import backbone_class

    bound = 0 if request.param == "stacked" else 2**40
    for name in ("geps", "coda"):
        monkeypatch.setattr(backbone_class(name), "per_env_max", bound)
    return request.param


@pytest.fixture(scope="session")
def lotka_volterra(tmp_path_factory):
    return build(tmp_path_factory, "lv", generator="ode", systems=["lotka_volterra"])


@pytest.fixture(scope="session")
def lv(lotka_volterra):
    """The Lotka-Volterra dataset, loaded."""
    from mixer.data import load_dataset

    return load_dataset(lotka_volterra[0])


@pytest.fixture(scope="session")
def odebench10(tmp_path_factory):
    return build(
        tmp_path_factory,
        "odebench",
        generator="ode",
        systems=list(ODEBENCH10),
        envs_per_family=5,
        trajectories=SMALL_TRAJECTORIES,
    )


@pytest.fixture(scope="session")
def control_charts(tmp_path_factory):
    return build(
        tmp_path_factory, "cc", generator="control_charts", series_per_class=40, train_per_class=5
    )
