"""config/paper.yaml plans the paper's budgets per dataset (issue 15), read the way the
workflow reads them: through resolve_cell on the merged config."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixer.config import experiment_cells, load_config, resolve_cell

ROOT = Path(__file__).resolve().parents[2]

REFERENCE_PREDICTORS = ("mean", "persistence", "ar")  # mixer/methods/reference.py

# (dataset, regime, method) -> (outer steps, adaptation steps): the paper's figures.
PAPER_BUDGETS = {
    ("lotka_volterra", "k3", "mixer-geps"): (5000, 5000),
    ("lotka_volterra", "default", "coda-baseline"): (5000, 5000),
    ("glycolytic", "k1", "moe-gd-ncf"): (500, 500),
    ("selkov", "k20", "mixer-coda"): (1000, 1000),
    ("odebench10b", "default", "ncf-baseline"): (1500, 1500),
    ("odebench10a", "fam5", "moe-gd-geps"): (1500, 1500),
    ("control_charts", "k10", "mixer-plrnn"): (500, 500),
    ("eeg", "default", "coda-plrnn"): (500, 10000),
    ("lotka_volterra_sweep", "traj32", "single-geps"): (5000, 5000),
    ("glycolytic_sweep", "traj1", "mixer-ancestor-geps"): (500, 500),
}


@pytest.fixture(scope="module")
def paper():
    return load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml")


@pytest.mark.parametrize("cell", sorted(PAPER_BUDGETS))
def test_paper_cells_get_the_papers_budget_of_their_dataset(paper, cell):
    resolved = resolve_cell(paper, *cell, seed=0)
    outer, adapt = PAPER_BUDGETS[cell]
    assert resolved["training"]["outer_steps"] == outer
    assert resolved["training"]["n_ctx"] == resolved["training"]["n_model"] == 12
    assert resolved["adaptation"]["steps"] == adapt


def test_every_paper_cell_has_a_dataset_budget(paper):
    # No cell falls back to the default config's quick budget, but the reference predictors',
    # which train nothing (160 cells: 32 dataset x regime x method classes, 5 seeds).
    cells = [resolve_cell(paper, *c) for c in experiment_cells(paper)]
    assert len(cells) == 1055
    references = [c for c in cells if c["learner"] in REFERENCE_PREDICTORS]
    assert len(references) == 160
    budgets = {c["training"]["outer_steps"] for c in cells if c not in references}
    assert budgets == {500, 1000, 1500, 5000}


def test_every_paper_dataset_and_regime_has_the_reference_rows(paper):
    cells = experiment_cells(paper)
    tables = {(d, r) for d, r, _, _ in cells}
    for method in ("mean", "persistence"):
        assert {(d, r) for d, r, m, _ in cells if m == method} >= {
            (d, r) for d, r in tables if not r.startswith(("k", "fam"))
        }, method
    assert {d for d, _, m, _ in cells if m == "ar"} == {"control_charts", "eeg"}


def test_the_sweep_regimes_keep_the_first_n_of_32_trajectories(paper):
    assert paper["datasets"]["lotka_volterra_sweep"]["trajectories"]["train"] == 32
    cell = resolve_cell(paper, "lotka_volterra_sweep", "traj16", "mixer-geps", 0)
    assert cell["regime_knobs"]["trajectories"] == 16 and cell["n_experts"] == 3
    assert cell["context_dim"] == 6  # 2 per expert, split
