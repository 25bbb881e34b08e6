"""The configs run, per ODE dataset, the solver that config/solvers.csv (written by
benchmarks/bench_solvers.py from measured integration errors) picks for it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mixer.config import experiment_cells, load_config, resolve_cell
from mixer.methods import learner_class

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "config" / "solvers.csv"
RK4 = (1, 2, 4, 8, 16, 32)


def table() -> dict[str, dict]:
    with TABLE.open() as f:
        return {row["dataset"]: row for row in csv.DictReader(f)}


def rule(row: dict) -> str:
    """The cheapest RK4 whose MSE and maximum error are both <= dopri5's, else dopri5."""
    for s in RK4:
        mse, worst = float(row[f"rk4x{s}_mse"]), float(row[f"rk4x{s}_max"])
        if mse <= float(row["dopri5_mse"]) and worst <= float(row["dopri5_max"]):
            return f"rk4x{s}"
    return "dopri5"


def solver_of(pick: str) -> dict:
    if pick == "dopri5":
        return {"method": "dopri5", "rtol": 1e-3, "atol": 1e-6}
    return {"method": "rk4", "substeps": int(pick.removeprefix("rk4x"))}


def test_every_pick_follows_the_rule_from_its_own_figures():
    rows = table()
    assert {"lotka_volterra", "glycolytic", "selkov", "odebench10a", "odebench10b"} <= set(rows)
    for name, row in rows.items():
        assert row["pick"] == rule(row), name


def test_the_rule_keeps_dopri5_when_no_rk4_is_as_accurate():
    row = {"dopri5_mse": "1e-6", "dopri5_max": "1e-3"}
    row.update({f"rk4x{s}_mse": "inf" for s in RK4} | {f"rk4x{s}_max": "inf" for s in RK4})
    assert rule(row) == "dopri5"
    row["rk4x8_mse"], row["rk4x8_max"] = "1e-7", "2e-3"  # MSE better, max worse: not enough
    assert rule(row) == "dopri5"
    row["rk4x16_mse"], row["rk4x16_max"] = "1e-8", "1e-4"
    assert rule(row) == "rk4x16"


@pytest.mark.parametrize("extra", [[], ["config/paper.yaml"]], ids=["default", "paper"])
def test_every_cell_runs_its_datasets_pick(extra):
    rows = table()
    config = load_config(ROOT / "config/config.yaml", *(ROOT / p for p in extra))
    checked = 0
    for dataset, regime, method, seed in experiment_cells(config):
        cfg = resolve_cell(config, dataset, regime, method, seed)
        if dataset not in rows or not learner_class(cfg["learner"]).trains:
            continue
        want = solver_of(rows[dataset]["pick"])
        got = {k: cfg["solver"][k] for k in want}
        assert got == want, f"{dataset}/{regime}/{method}: {cfg['solver']} is not {want}"
        checked += 1
    assert checked > 0
