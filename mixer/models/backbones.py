"""Backbone names -> expert-bank classes (the registry lives beside the Expert contract, so
the banks register themselves), and the builder of a mixture."""

from __future__ import annotations

from typing import Any

import torch

from mixer.models.expert import BACKBONES, Expert, as_generator, register_backbone
from mixer.models.moe import MixtureOfExperts, expert_context_dim

__all__ = ["BACKBONES", "backbone_class", "build_mixture", "register_backbone"]


def backbone_class(name: str) -> type[Expert]:
    """The expert bank ``name``: built-in, or ``package.module:Class`` (an Expert subclass)."""
    return BACKBONES.get(name)


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
