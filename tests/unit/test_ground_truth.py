"""Generated trajectories are correct to the equations (closed forms, first integrals)."""

from __future__ import annotations

import numpy as np

from mixer.data import SPLITS, generate
from mixer.data.odebench import ODEBENCH10
from tests.helpers import SMALL_TRAJECTORIES, make_spec


def test_harmonic_oscillator_matches_closed_form():
    spec = make_spec(
        generator="ode",
        systems=["harmonic_oscillator"],
        envs_per_family=5,
        trajectories=SMALL_TRAJECTORIES,
    )
    splits, envs, _ = generate(spec)
    worst = 0.0
    for split in SPLITS:
        X, t, ids = splits[split]["X"], splits[split]["t"], splits[split]["env_id"]
        for i, env_id in enumerate(ids):
            omega = np.sqrt(envs[env_id]["params"]["c0"])
            a, b = X[i, :, 0, 0][:, None], X[i, :, 0, 1][:, None]  # y0(0), y1(0)
            wt = omega * t[i][None, :]
            y0 = a * np.cos(wt) + b / omega * np.sin(wt)
            y1 = -a * omega * np.sin(wt) + b * np.cos(wt)
            worst = max(worst, np.abs(X[i, ..., 0] - y0).max(), np.abs(X[i, ..., 1] - y1).max())
    assert worst < 1e-8, worst


def test_lotka_volterra_first_integral_is_conserved(lotka_volterra):
    _, splits, envs, _ = lotka_volterra
    worst = 0.0
    for split in SPLITS:
        X, ids = splits[split]["X"], splits[split]["env_id"]
        for i, env_id in enumerate(ids):
            p = envs[env_id]["params"]
            x, y = X[i, ..., 0], X[i, ..., 1]
            V = p["delta"] * x - p["gamma"] * np.log(x) + p["beta"] * y - p["alpha"] * np.log(y)
            drift = np.abs(V - V[:, :1]) / np.abs(V[:, :1])
            worst = max(worst, drift.max())
    assert worst < 1e-8, worst


def test_every_trajectory_finite(odebench10, lotka_volterra, control_charts):
    for _, splits, _, _ in (odebench10, lotka_volterra, control_charts):
        for split in SPLITS:
            assert np.isfinite(splits[split]["X"]).all()


def test_odebench_has_ten_distinct_vector_fields():
    from mixer.data import resolve_system

    systems = [resolve_system(name) for name in ODEBENCH10]
    assert len({s.name for s in systems}) == 10
    rng = np.random.default_rng(0)
    states = rng.uniform(-1.5, 1.5, size=(64, 2))
    states[:, 1] = rng.uniform(-1.4, -0.3, size=64)  # keep shear flow away from tan(y1) = 0
    # One common parameter vector for every family, so that equal laws would give equal fields.
    common = {"c0": 0.7, "c1": 0.3}
    fields = [s.vector_field(states, common) for s in systems]
    for i in range(10):
        for j in range(i + 1, 10):
            gap = np.abs(fields[i] - fields[j]).max()
            assert gap > 1e-3, (systems[i].name, systems[j].name)


def test_duffing_is_not_van_der_pol():
    from mixer.data import resolve_system

    duffing, vdp = resolve_system("duffing"), resolve_system("van_der_pol")
    y = np.array([[1.5, 0.5]])
    p = {"c0": 0.3}
    # Duffing: y1' = -c0 y1 - y0 - y0^3 = -0.15 - 1.5 - 3.375
    np.testing.assert_allclose(duffing.vector_field(y, p)[0], [0.5, -5.025])
    assert not np.allclose(duffing.vector_field(y, p), vdp.vector_field(y, p))


def test_shear_flow_rejects_trajectories_near_its_singularity():
    from mixer.data import resolve_system

    shear = resolve_system("shear_flow")
    X = np.zeros((2, 3, 2))
    X[..., 1] = -1.0
    X[1, 2, 1] = -0.01  # sin(y1) ~ 0: too close to tan(y1) = 0
    assert shear.admissible(X).tolist() == [True, False]
