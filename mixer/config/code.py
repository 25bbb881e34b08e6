"""Which code each workflow rule runs, so that its source hash covers exactly that code.

A rule's result depends on its stage's modules, on the learner (and backbone) module of the
cell and on the user modules (``package.module:Class``) a dataset names; the files are found
by following imports (:mod:`mixer.records.sources`). So a new metric re-runs the evaluations
and not the training, a report change re-runs the tables only, and an edited user learner
re-runs its own cells.
"""

from __future__ import annotations

from mixer.methods.catalog import backbone_spec, learner_spec
from mixer.records.sources import source_hash

# The entry modules of each rule (what its `mixer` subcommand calls).
RULE_MODULES = {
    "generate_dataset": ["mixer.data", "mixer.records.provenance"],
    "train": ["mixer.stages.train"],
    "evaluate": ["mixer.stages.evaluate"],
    "aggregate": ["mixer.report.aggregate"],
    "claims": ["mixer.report.claims_files"],
    "literature": ["mixer.report.literature"],
    "plots": ["mixer.report.plots"],
}


def cell_targets(config: dict, method: str) -> list[str]:
    """The classes a method's cells are built from: its learner and, if any, its backbone."""
    entry = config["methods"][method]
    spec = learner_spec(entry["learner"])
    targets = [spec.target]
    backbone = entry.get("backbone") or spec.default_backbone
    if spec.backbones:  # a user's backbone is its own target (no import to find it)
        targets.append(backbone if ":" in backbone else backbone_spec(backbone)["target"])
    return targets


def dataset_targets(spec: dict) -> list[str]:
    """The user classes a dataset entry names (its ODE systems, its generator)."""
    return [name for name in [spec["generator"], *spec.get("systems", [])] if ":" in name]


def rule_code_hash(config: dict, rule: str, dataset: str = "", method: str = "") -> str:
    """The hash a rule puts in its params: its modules, plus the cell's or dataset's classes."""
    targets = cell_targets(config, method) if method else []
    if rule == "generate_dataset":
        targets += dataset_targets(config["datasets"][dataset])
    return source_hash(RULE_MODULES[rule], targets)
