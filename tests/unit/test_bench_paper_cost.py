"""The pure parts of benchmarks/bench_paper_cost.py: cost classes, budgets and hours.

A small config, not config/paper.yaml: validating the paper's grid takes minutes on a busy
2-core machine (mixer.config.validate.schema() parses the schema once per call, ~600 times there).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mixer.config import resolve_cell, validate_config

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_paper_cost.py"
GOT = {"s_outer": 2.0, "s_adapt": 0.1, "ops_outer": 1000, "ops_adapt": 100}
BUDGET = {"training": {"outer_steps": 5000}, "adaptation": {"steps": 700}}


@pytest.fixture(scope="module")
def bench():
    """The script as a module (it imports its neighbour bench_methods, as when it is run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(SCRIPT.parent))
        spec = importlib.util.spec_from_file_location("bench_paper_cost", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config():
    ancestor = {"learner": "mixer", "n_experts": 3, "context_dim": 3, "split_context": False,
                "gate_warmup": 120}  # fmt: skip
    return validate_config(
        {
            "datasets": {"lv": {"generator": "ode", "systems": ["lotka_volterra"]}},
            "methods": {
                "coda": {"learner": "coda"},
                "ofa": {"learner": "one-for-all"},
                "cavia": {"learner": "cavia"},
                "ancestor": ancestor,
                "mean": {"learner": "mean"},
            },
            "seeds": [0, 1],
            "experiments": [
                {"datasets": ["lv"], "methods": ["coda", "ofa", "cavia", "ancestor"], **BUDGET},
                {"datasets": ["lv"], "methods": ["mean"]},  # trains nothing: no cost class
                {"datasets": ["lv"], "methods": ["coda"], **BUDGET},
            ],
        }
    )


def cell(config, method):
    return resolve_cell(config, "lv", "default", method, 0)


def test_a_class_is_dataset_method_regime_a_cell_of_two_experiments_counts_once(bench, config):
    classes = bench.cost_classes(config)
    assert sorted(classes) == [("lv", m, "default") for m in ("ancestor", "cavia", "coda", "ofa")]
    assert all(seeds == [0, 1] for seeds in classes.values())
    assert list(bench.cost_classes(config, methods={"ofa"})) == [("lv", "ofa", "default")]
    assert bench.cost_classes(config, only={"other"}) == {}


def test_hours_follow_the_budget_of_the_experiment(bench, config):
    row = bench.class_row(cell(config, "coda"), 5, GOT, 10.0)
    assert (row["outer_steps"], row["adapt_steps"], row["learner"]) == (5000, 700, "coda/coda")
    assert row["hours_cell"] == pytest.approx((5000 * 2.0 + 700 * 0.1) / 3600)
    assert row["hours_class"] == pytest.approx(5 * row["hours_cell"])
    gpu_seconds = (5000 * 1000 + 700 * 100) * 10e-6
    assert row["gpu_hours_class"] == pytest.approx(5 * gpu_seconds / 3600)


def test_adaptation_steps_are_where_each_learner_reads_them(bench, config):
    cavia = cell(config, "cavia")
    assert bench.class_row(cavia, 1, GOT, 10.0)["adapt_steps"] == cavia["cavia_inner_steps_test"]
    assert bench.class_row(cell(config, "ofa"), 1, GOT, 10.0)["adapt_steps"] == 0


def test_the_timed_steps_come_after_the_gate_warm_up(bench, config):
    # First refit at inner step 132 (past 120, a multiple of 12): in outer step 6 of 24 steps.
    assert bench.warmup_outer_steps(cell(config, "ancestor")) == 6
    assert bench.warmup_outer_steps(cell(config, "coda")) == 1


def test_an_untimed_class_takes_the_figures_of_a_timed_one_of_its_dataset_and_method(bench):
    timed = {("lv", "mix", "k3"): {}, ("lv", "single", "default"): {}, ("gly", "mix", "k1"): {}}
    assert bench.timed_as(("lv", "mix", "k3"), timed, {}) == ("lv", "mix", "k3")
    assert bench.timed_as(("lv", "mix", "k20"), timed, {}) == ("lv", "mix", "k3")
    assert bench.timed_as(("lv", "anc", "k3"), timed, {"anc": "mix"}) == ("lv", "mix", "k3")
    assert bench.timed_as(("lv", "coda", "default"), timed, {}) is None
