"""Backbone names -> expert-bank classes, and builders that check a model config."""

from __future__ import annotations

from typing import Any

import torch

from mixer.errors import ConfigError
from mixer.models.base import Expert, as_generator
from mixer.models.coda import CoDAExpert
from mixer.models.geps import GEPSExpert
from mixer.models.moe import MixtureOfExperts, expert_context_dim
from mixer.models.ncf import NCFExpert
from mixer.models.plrnn import PLRNNExpert

BACKBONES: dict[str, type[Expert]] = {
    "ncf": NCFExpert,
    "coda": CoDAExpert,
    "geps": GEPSExpert,
    "plrnn": PLRNNExpert,
}


def backbone_class(name: str) -> type[Expert]:
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_mixture(
    backbone: str,
    state_dim: int,
    context_dim: int,
    n_experts: int,
    *,
    generator: torch.Generator | int | None = None,
    options: dict | None = None,
    split_context: bool = False,
    gate_mode: str = "refit",
    dense: bool = False,
    **architecture: Any,
) -> MixtureOfExperts:
    """An expert bank of the named backbone wrapped in a gate; d_ξ is the full context size.

    ``architecture`` is the bank's ``width``, ``depth`` and ``activation`` (see ``Expert``);
    ``options`` are backbone-specific constructor keywords (``Expert.options_from_config``).
    """
    cls = backbone_class(name=backbone)
    gen = as_generator(generator)  # one generator for bank then gate: deterministic from a seed
    expert_dim = expert_context_dim(context_dim, n_experts, split_context)
    experts = cls(
        state_dim, expert_dim, n_experts, generator=gen, **architecture, **(options or {})
    )
    return MixtureOfExperts(
        experts,
        context_dim,
        split_context=split_context,
        gate_mode=gate_mode,
        dense=dense,
        generator=gen,
    )
