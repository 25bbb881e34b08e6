"""Helpers shared by the tests: validated specs and small generated datasets."""

from __future__ import annotations

import copy

from mixer.config import validate_dataset_spec
from mixer.data import generate, save_dataset

SMALL_TRAJECTORIES = {"train": 3, "val": 2, "test": 4, "adapt_support": 1, "adapt_query": 3}


def make_spec(**entry) -> dict:
    """A validated dataset entry with defaults filled."""
    return validate_dataset_spec("test", copy.deepcopy(entry))


def build(tmp_path_factory, name: str, **entry):
    """Generate and save a dataset; return (folder, splits, environments, meta)."""
    spec = make_spec(**entry)
    splits, envs, extra = generate(spec)
    out = tmp_path_factory.mktemp(name)
    meta = save_dataset(out, splits, envs, {"dataset": name, "generator": spec, **extra})
    return out, splits, envs, meta
