"""Helpers shared by the tests: validated specs and small generated datasets."""

from __future__ import annotations

import copy
import json

from mixer.config import validate_config, validate_dataset_spec
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


def validated_copy(raw: dict) -> dict:
    """A validated deep copy of a test config (defaults filled), torch at one thread."""
    import torch

    torch.set_num_threads(1)
    return validate_config(json.loads(json.dumps(raw)))


def cpu_batch(dataset, split: str, trajectories: int | None = None):
    """All environments of one split as an EnvBatch on the CPU."""
    import torch

    from mixer.training.batches import make_batch

    return make_batch(dataset, split, {}, torch.device("cpu"), trajectories=trajectories)
