"""A benchmark cell's settings: the one place that turns a config into what a cell runs.

A cell is (dataset, regime, method, seed). :func:`resolve_cell` merges the method's entry with
the global training, adaptation and solver blocks, applies the regime's knobs and derives the
sizes that depend on them; the workflow passes its result to ``mixer train --spec`` and the
CLI checks whatever it receives with :func:`mixer.config.validate.validate_cell`. Nothing
here imports torch, so planning a run (``snakemake -n``) stays fast.
"""

from __future__ import annotations

import copy
import re

from mixer.config.schema import DefaultFillingValidator, describe_error, problems_error, schema
from mixer.errors import ConfigError
from mixer.methods.catalog import learner_spec

BLOCKS = ("training", "adaptation", "solver")
# Keys of a resolved cell besides the method's own settings.
CELL_KEYS = ("method", "regime", "dataset", "seed", "device", "regime_knobs")


def resolve_method(
    config: dict, method: str, regime: str = "default", budget: dict | None = None
) -> dict:
    """A validated config's method entry in one regime: blocks merged, knobs applied.

    ``budget``: an experiment's own ``training``/``adaptation``/``solver`` keys, merged over the
    method's and the global ones (:func:`experiment_budget`).
    """
    entry = copy.deepcopy(config["methods"][method])
    budget = budget or {}
    for block in BLOCKS:
        merged = {**config[block], **entry[block], **budget.get(block, {})}
        errors = list(DefaultFillingValidator(schema()["$defs"][block]).iter_errors(merged))
        if errors:
            raise problems_error(
                f"invalid overrides of method '{method}'",
                [f"methods.{method}.{block}.{describe_error(e)}" for e in errors],
            )
        entry[block] = merged
    if entry["training"]["n_ctx"] + entry["training"]["n_model"] < 1:
        raise ConfigError(
            f"methods.{method} (regime '{regime}'): training.n_ctx and training.n_model are both "
            "0, so an outer step would take no step. Fix: set either to 1 or more."
        )
    spec = learner_spec(entry["learner"])
    declared = spec.keys(entry.get("backbone"))
    knobs = config["regimes"][regime]
    if knobs.get("n_experts") is not None and "n_experts" in declared:
        entry["n_experts"] = knobs["n_experts"]
    # A mixture with split contexts: expert k reads chunk k of the context, so K divides d_ξ.
    if "split_context" in declared and spec.fixed_n_experts is None and entry["split_context"]:
        if entry.get("context_dim_per_expert") is not None:
            entry["context_dim"] = entry["n_experts"] * entry["context_dim_per_expert"]
        if entry["context_dim"] % entry["n_experts"]:
            raise ConfigError(
                f"methods.{method} (regime '{regime}'): context_dim {entry['context_dim']} is "
                f"not divisible by n_experts {entry['n_experts']} with split_context. Fix: "
                "set context_dim_per_expert, or split_context: false."
            )
    return entry


def experiment_budget(config: dict, dataset: str, regime: str, method: str) -> dict:
    """The ``training``/``adaptation``/``solver`` overrides of the experiments that hold this
    cell.

    A cell is named by (dataset, regime, method, seed), not by its experiment: two experiments
    that hold the same cell with different budgets are an error, not a silent choice.
    """
    found: dict[int, dict] = {}
    for i, exp in enumerate(config.get("experiments", [])):
        if dataset in exp["datasets"] and regime in exp["regimes"] and method in exp["methods"]:
            found[i] = {block: exp.get(block) or {} for block in BLOCKS}
    budgets = list(found.values())
    if any(b != budgets[0] for b in budgets[1:]):
        which = ", ".join(f"experiments[{i}]" for i in found)
        raise ConfigError(
            f"cell {dataset}/{regime}/{method} is in {which} with different training, "
            "adaptation or solver overrides. Fix: give it one budget (move it to one "
            "experiment, or use another regime name)."
        )
    return budgets[0] if budgets else {}


def natural_key(name: str) -> tuple:
    """Sort key that reads the numbers in a name as numbers: traj4 before traj16, fam2 before
    fam10 (the order a reader expects of regimes in the tables and figures)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def experiment_cells(config: dict) -> list[tuple[str, str, str, int]]:
    """Every cell (dataset, regime, method, seed) of the experiments, sorted (numbers in names
    as numbers), each once; runs.csv, the tables and the figures keep this order.

    An experiment's own ``seeds`` replace the global list for its cells (e.g. fewer seeds for
    an expensive comparison row).
    """
    cells = {
        (dataset, regime, method, seed)
        for exp in config.get("experiments", [])
        for dataset in exp["datasets"]
        for regime in exp["regimes"]
        for method in exp["methods"]
        for seed in exp.get("seeds") or config["seeds"]
    }
    return sorted(cells, key=lambda c: (*map(natural_key, c[:3]), c[3]))


def resolve_cell(config: dict, dataset: str, regime: str, method: str, seed: int) -> dict:
    """Everything one cell's training needs, resolved from a validated config."""
    budget = experiment_budget(config, dataset, regime, method)
    return {
        **resolve_method(config, method, regime, budget),
        "method": method,
        "regime": regime,
        "dataset": dataset,
        "seed": seed,
        "device": config["device"],
        "regime_knobs": config["regimes"][regime],
    }
