"""A learner instance for a resolved cell on a device: what training and evaluation share."""

from __future__ import annotations

import torch

from mixer.errors import ConfigError
from mixer.methods.catalog import learner_class
from mixer.training.batches import make_batch


def pick_device(name: str) -> torch.device:
    """The config's ``device`` (``auto``: CUDA when present, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but CUDA is not available. Fix: device: auto")
    return torch.device(name)


def build_learner(cfg: dict, dataset, device: torch.device, seed: int):
    """The cell's learner, built on its regime's training batch; returns (learner, batch)."""
    regime = cfg["regime_knobs"]
    train = make_batch(dataset, "train", regime, device, trajectories=regime.get("trajectories"))
    learner = learner_class(cfg["learner"])(cfg, train.X.shape[-1], train.n_envs, device, seed)
    return learner, train
