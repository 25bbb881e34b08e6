"""Tensors of environments for learners, and the data-regime selection applied at train time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mixer.data.storage import Dataset
from mixer.errors import ConfigError


@dataclass
class EnvBatch:
    """Environments as one batch: X [E, N, T, d], t [E, T] on the learner's device/dtype."""

    X: torch.Tensor
    t: torch.Tensor
    env_id: np.ndarray
    family: np.ndarray  # family_index per environment (for scoring only, never for learning)

    @property
    def n_envs(self) -> int:
        return self.X.shape[0]

    @property
    def x0(self) -> torch.Tensor:
        return self.X[:, :, 0]

    def subset(self, envs: torch.Tensor | None) -> EnvBatch:
        if envs is None:
            return self
        idx = envs.cpu().numpy()
        return EnvBatch(self.X[envs], self.t[envs], self.env_id[idx], self.family[idx])


def select_environments(dataset: Dataset, split: str, regime: dict) -> np.ndarray:
    """Row indices of ``split`` kept by the regime (n_families, envs_per_family)."""
    envs = dataset.environments
    ids = dataset[split].env_id
    family = np.array([envs[int(i)]["family_index"] for i in ids])
    keep = np.ones(len(ids), dtype=bool)
    fix = f"Fix: lower the regime's knob, or generate a larger dataset than {dataset.path}."
    n_families = regime.get("n_families")
    if n_families is not None:
        held = len({e["family_index"] for e in envs.values()})
        if n_families > held:
            raise ConfigError(f"regime n_families {n_families}: the dataset has {held}. {fix}")
        keep &= family < n_families
    per_family = regime.get("envs_per_family")
    if per_family is not None and envs[int(ids[0])]["role"] == "train":
        for f in np.unique(family[keep]):
            rows = np.flatnonzero(keep & (family == f))
            if per_family > len(rows):
                raise ConfigError(
                    f"regime envs_per_family {per_family}: family {int(f)} of split '{split}' "
                    f"has {len(rows)} training environments. {fix}"
                )
            keep[rows[per_family:]] = False
    if not keep.any():
        raise ConfigError(f"the regime {regime} keeps no environment of split '{split}'")
    return np.flatnonzero(keep)


def make_batch(
    dataset: Dataset,
    split: str,
    regime: dict,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    trajectories: int | None = None,
) -> EnvBatch:
    rows = select_environments(dataset, split, regime)
    data = dataset[split]
    X = data.X[rows]
    if trajectories is not None:
        if trajectories > X.shape[1]:
            raise ConfigError(
                f"regime asks for {trajectories} trajectories per environment but split "
                f"'{split}' of {dataset.path} has {X.shape[1]}. Fix: generate more "
                "(datasets.<name>.trajectories) or lower the regime's `trajectories`."
            )
        X = X[:, :trajectories]
    envs = dataset.environments
    return EnvBatch(
        X=torch.as_tensor(X, dtype=dtype, device=device),
        t=torch.as_tensor(data.t[rows], dtype=dtype, device=device),
        env_id=data.env_id[rows],
        family=np.array([envs[int(i)]["family_index"] for i in data.env_id[rows]]),
    )
