"""The expert-bank contract and the batched-MLP pieces every backbone is built from.

An *expert bank* holds the parameters of all K experts stacked along a leading K dimension.
A forward pass is two steps:

1. ``env_weights(expert_of_env, contexts)`` gathers the routed expert's parameters for every
   environment (``index_select`` along dim 0, whose backward scatters gradients only into the
   rows of routed experts, so unrouted experts get exactly zero gradient) and materialises the
   per-environment weights once;
2. ``field(weights, x)`` evaluates f(x; ξ_e) for all environments with batched matrix products.

Step 1 runs once per rollout, step 2 at every vector-field evaluation. Neither loops over
environments or experts, and neither touches an unrouted expert's parameters, so the cost of a
forward pass does not grow with K.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mixer.errors import ConfigError
from mixer.models.activations import activation_fn
from mixer.models.integrate.rollout import FieldFn, rollout
from mixer.registry import Registry

# One batched linear layer: W [E, out, in], b [E, out].
Layer = tuple[Tensor, Tensor]


# Expert banks by config name (the ``backbone`` key); a user's is ``package.module:Class``.
BACKBONES = Registry(
    "backbone",
    "mixer.models.expert:Expert",
    ("mixer.models.ncf", "mixer.models.coda", "mixer.models.geps", "mixer.models.plrnn"),
)
register_backbone = BACKBONES.register


def as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """A seed becomes a fresh CPU generator; None means torch's global RNG."""
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    return generator


def fan_in_uniform(
    shape: Sequence[int], fan_in: int, generator: torch.Generator | None, scale: float = 1.0
) -> Tensor:
    """U(-s/√fan_in, s/√fan_in): the bound torch's default ``nn.Linear`` init gives."""
    bound = scale / math.sqrt(fan_in)
    return (torch.rand(tuple(shape), generator=generator) * 2 - 1) * bound


def mlp_sizes(in_dim: int, width: int, depth: int, out_dim: int) -> list[int]:
    """Layer widths of an MLP with ``depth`` hidden layers of ``width`` units."""
    return [in_dim, *([width] * depth), out_dim]


def apply_layers(
    layers: Sequence[Layer], h: Tensor, act: Callable[[Tensor], Tensor], act_last: bool = False
) -> Tensor:
    """Batched MLP: h [E, N, in] -> [E, N, out], one ``baddbmm`` per layer."""
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        # b [E, 1, out] broadcasts over the N rows; W^T is a view, no copy.
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < last or act_last:
            h = act(h)
    return h


class StackedLayers(nn.Module):
    """The linear layers of one MLP for all K experts: W_i [K, out, in], b_i [K, out]."""

    def __init__(self, sizes: Sequence[int], n_experts: int, generator: torch.Generator | None):
        super().__init__()
        self.sizes = list(sizes)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            w = fan_in_uniform((n_experts, fan_out, fan_in), fan_in, generator)
            b = fan_in_uniform((n_experts, fan_out), fan_in, generator)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def gather(self, expert_of_env: Tensor) -> list[Layer]:
        """Each environment's copy of its routed expert's layers."""
        return [
            (w.index_select(0, expert_of_env), b.index_select(0, expert_of_env))
            for w, b in zip(self.weights, self.biases, strict=True)
        ]


class Expert(nn.Module, ABC):
    """A bank of K context-conditioned vector fields f_k(x; ξ), parameters stacked over K.

    Contract (every backbone):

    - ``env_weights(expert_of_env [E] long, contexts [E, context_dim])`` returns an opaque
      object holding every environment's materialised weights; it is differentiable with
      respect to the contexts and the parameters, and only rows ``expert_of_env`` of the
      stacked parameters receive gradient. Built once per rollout and reused by every call
      to ``field``.
    - ``field(weights, x [E, N, state_dim])`` returns f(x; ξ_e) as [E, N, state_dim] using
      only batched matrix products. The field is autonomous (no time input).
    - ``forward(expert_of_env, contexts, x)`` is ``field(env_weights(...), x)``.
    - ``unroll(fn, x0, t, data=None, alpha=1.0, **solver)`` turns a field ``fn(τ, x)`` built
      from these weights into trajectories [E, N, T, d] from x0 [E, N, d] on grids t [E, T]:
      the ODE rollout (``data`` and ``alpha`` are ignored); a discrete-time bank
      (``discrete_time = True``, e.g. the PL-RNN) implements ``iterate(fn, x0, t, data,
      alpha)`` instead, which iterates its one-step map with teacher forcing by ``data`` when
      ``alpha < 1``.
    - ``build(generator, **options)`` creates the bank's parameters from ``generator``, always
      in the same order, so that a seed gives the same model; its keyword-only arguments are
      the backbone's own options.
    - ``options_from_config(cfg)`` (classmethod): those options read from a method's config
      (none for the ODE backbones).

    Constructor arguments are the same for every backbone, written only here:
    ``state_dim, context_dim, n_experts``, then keyword-only ``width=64, depth=3`` (hidden
    layers), ``activation="silu"``, ``generator`` (a ``torch.Generator`` or an int seed, for a
    deterministic init) and the backbone's options, which go to ``build``.
    """

    name: str = ""
    discrete_time: bool = False
    # Keys a method entry may set when it picks this backbone (JSON-schema fragments, read by
    # the config validator through mixer/methods/catalog.json); none for the ODE backbones.
    hyperparameters: dict[str, dict] = {}

    def __init__(
        self,
        state_dim: int,
        context_dim: int,
        n_experts: int,
        *,
        width: int = 64,
        depth: int = 3,
        activation: str = "silu",
        generator: torch.Generator | int | None = None,
        **options: Any,
    ):
        super().__init__()
        for key, value, low in (
            ("state_dim", state_dim, 1),
            ("context_dim", context_dim, 1),
            ("n_experts", n_experts, 1),
            ("width", width, 1),
            ("depth", depth, 1),
        ):
            if value < low:
                raise ConfigError(f"{self.name} backbone: {key} must be >= {low}, got {value}")
        self.state_dim = state_dim
        self.context_dim = context_dim
        self.n_experts = n_experts
        self.width = width
        self.depth = depth
        self.activation = activation
        self.act = activation_fn(activation)
        self.build(as_generator(generator), **options)

    @abstractmethod
    def build(self, gen: torch.Generator | None) -> None:
        """Create the parameters from ``gen`` (None: torch's global RNG), in a fixed order.

        Subclasses add their own options as keyword-only arguments with defaults.
        """

    def check_inputs(self, expert_of_env: Tensor, contexts: Tensor) -> None:
        """Shape checks only (no value checks: those would need a host sync)."""
        if expert_of_env.dim() != 1 or contexts.shape != (len(expert_of_env), self.context_dim):
            raise ValueError(
                f"expected expert_of_env [E] and contexts [E, {self.context_dim}], got "
                f"{tuple(expert_of_env.shape)} and {tuple(contexts.shape)}"
            )

    @abstractmethod
    def env_weights(self, expert_of_env: Tensor, contexts: Tensor) -> Any:
        """Gather the routed experts' parameters and materialise per-environment weights."""

    @abstractmethod
    def field(self, weights: Any, x: Tensor) -> Tensor:
        """f(x; ξ_e) for every environment: x [E, N, d] -> [E, N, d]."""

    def forward(self, expert_of_env: Tensor, contexts: Tensor, x: Tensor) -> Tensor:
        return self.field(self.env_weights(expert_of_env, contexts), x)

    @classmethod
    def options_from_config(cls, cfg: dict) -> dict:
        """Backbone-specific constructor keywords taken from a method's config."""
        return {}

    def unroll(
        self,
        step: FieldFn,
        x0: Tensor,
        t: Tensor,
        *,
        data: Tensor | None = None,
        alpha: float = 1.0,
        **solver,
    ) -> Tensor:
        """Trajectories [E, N, T, d] of the field ``step`` from x0 [E, N, d] on grids t [E, T].

        An ODE bank integrates ``step`` (``solver`` goes to ``rollout``; ``data`` and
        ``alpha`` are ignored); a discrete-time bank iterates it (``iterate``; ``solver`` is
        ignored).
        """
        if self.discrete_time:
            return self.iterate(step, x0, t, data, alpha)
        return rollout(step, x0, t, **solver)

    def iterate(self, step: FieldFn, x0: Tensor, t: Tensor, data: Tensor | None, alpha: float):
        """A discrete-time bank's ``unroll``: its one-step map ``step`` iterated from x0."""
        raise NotImplementedError(f"{type(self).__name__} is not a discrete-time bank")
