"""Rows grouped by expert: the sparse, sync-free core of every MLP expert bank.

A top-1 mixture routes each environment to one expert. Instead of materialising one weight
matrix per environment (whose gradient would be a [E, out, in] tensor at every vector-field
evaluation), the rows of a batch are sorted by expert once per rollout and each expert's
layer is applied to its contiguous block of rows with one grouped matrix product
(``torch._grouped_mm`` on CPU float32; a gather-based fallback elsewhere). The group
boundaries live on the device (``offsets``), so nothing waits on the host and every shape is
fixed whatever the routing: only the routed experts' parameters are read, and unrouted
experts get exactly zero gradient.

:class:`RoutedMLP` is one rollout's network, built by a bank's ``env_weights``: a chain of
layers of three kinds, with the per-environment context folded in without per-environment
weights in the wide layers:

- ``env``: ``W_e x + b_e`` for thin layers (the state-sized first and last), one batched
  product over environments (an environment's N rows share its weights);
- ``geps``:  ``W_k x + A_k (ξ_e ⊙ (B_k x)) + b_e`` with W and B stacked into one product;
- ``coda``:  ``W_k x + Σ_c ξ_e,c (H_k,c x) + b_e`` with the (1 + d_ξ) maps stacked into one
  product (θ_e = θ_k + H_k ξ_e applied without forming θ_e's weights).

Its forward and reverse passes are written by hand (:meth:`RoutedMLP.forward`,
:meth:`RoutedMLP.backward`). :mod:`mixer.models.grouped_grads` reduces the recorded
gradients and wraps one evaluation as an autograd function (for adaptive solvers);
:mod:`mixer.models.integrate.rollout` runs a whole fixed-step rollout with one reverse pass.
The forward keeps only what the requested gradients
need, and every parameter gradient is reduced once per rollout, as one product over all
evaluations (a grouped one for the experts' weights), instead of once per evaluation.

Where the time goes (LV, width 256, K = 3, one CPU thread): the grouped products are about
half of an inner step; with three experts they are three products of 12 rows instead of
one of 36 (``benchmarks/bench_lv_mixer3.py`` prints the resulting ceiling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from mixer.models.activations import ACTIVATIONS

if TYPE_CHECKING:
    from mixer.models.grouped_grads import Accumulator

ALIGN = 4  # torch._grouped_mm wants 16-byte strides: float32 widths padded to a multiple of 4


def padded(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def pad_last(t: Tensor, size: int) -> Tensor:
    return t if t.shape[-1] == size else F.pad(t, (0, size - t.shape[-1]))


def _native(a: Tensor) -> bool:
    return a.device.type == "cpu" and a.dtype == torch.float32


def grouped_mm(a: Tensor, b: Tensor, groups: RowGroups) -> Tensor:
    """Row block k of a [R, i] times b[k] [i, o] -> [R, o]; blocks given by ``groups``."""
    if b.shape[0] == 1:
        return a @ b[0]
    if _native(a):
        return torch._grouped_mm(a, b, offs=groups.offsets)
    return torch.bmm(a.unsqueeze(1), b.index_select(0, groups.expert_of_row)).squeeze(1)


def grouped_outer(a: Tensor, g: Tensor, groups: RowGroups, repeats: int = 1) -> Tensor:
    """Σ over the rows of block k of a_rᵀ g_r -> [K, i, o] (a weight gradient).

    ``a`` [R·repeats, i] and ``g`` [R·repeats, o] hold ``repeats`` consecutive rows per row of
    the groups (e.g. one per vector-field evaluation), so block k is rows
    [offsets[k-1], offsets[k]) · repeats.
    """
    if groups.n_experts == 1:
        return (a.T @ g).unsqueeze(0)
    if _native(a):
        offsets = groups.offsets if repeats == 1 else groups.offsets * repeats
        return torch._grouped_mm(a.T, g, offs=offsets)
    expert = groups.expert_of_row.repeat_interleave(repeats)
    onehot = F.one_hot(expert, groups.n_experts).to(a.dtype)  # [R', K]
    return torch.bmm(
        (onehot.T.unsqueeze(2) * a.unsqueeze(0)).transpose(1, 2),
        g.expand(groups.n_experts, *g.shape),
    )


class Routing:
    """Environments sorted by expert (stable): fixed shapes, no host synchronisation."""

    def __init__(self, expert_of_env: Tensor, n_experts: int):
        self.n_experts = n_experts
        self.expert_of_env = expert_of_env
        self.order = torch.argsort(expert_of_env, stable=True)
        self.inverse = torch.argsort(self.order)
        self.sorted_experts = expert_of_env.index_select(0, self.order)
        experts = torch.arange(n_experts, device=expert_of_env.device)
        self.env_ends = (expert_of_env.unsqueeze(1) == experts).sum(dim=0).cumsum(dim=0)
        self._rows: dict[int, RowGroups] = {}

    def rows(self, n_rows: int) -> RowGroups:
        if n_rows not in self._rows:
            self._rows[n_rows] = RowGroups(self, n_rows)
        return self._rows[n_rows]

    def sort(self, x: Tensor) -> Tensor:
        """[E, N, ...] in environment order -> [E·N, ...] rows sorted by expert."""
        return x.index_select(0, self.order).flatten(0, 1)

    def unsort(self, rows: Tensor, n_rows: int) -> Tensor:
        return rows.unflatten(0, (-1, n_rows)).index_select(0, self.inverse)


class RowGroups:
    """The rows of E environments × N rows each, sorted by expert."""

    def __init__(self, routing: Routing, n_rows: int):
        self.n_experts = routing.n_experts
        self.n_rows = n_rows
        self.offsets = (routing.env_ends * n_rows).to(torch.int32)
        self.expert_of_row = routing.sorted_experts.repeat_interleave(n_rows)


def per_env_layer(n_envs: int, fan_in: int, fan_out: int, max_elements: int) -> bool:
    """Whether a layer runs on per-environment weights (one batched product over the E
    environments) rather than on its experts' stacked maps (grouped products).

    Thin layers (the state-sized first and last) always do. A wider one does while its E
    per-environment matrices hold at most ``max_elements`` numbers: small products are bound
    by the number of operations, where the per-environment form has the fewest; large ones
    by reading the weights, where the experts' shared maps read E / K times fewer. Each bank
    sets its own bound from measurements (``per_env_max``).
    """
    return min(fan_in, fan_out) <= 8 or n_envs * fan_in * fan_out <= max_elements


def env_to_rows(t: Tensor, n_rows: int) -> Tensor:
    """[E, ...] -> [E·N, ...], each environment's row repeated N times (a copy)."""
    return t.unsqueeze(1).expand(t.shape[0], n_rows, *t.shape[1:]).flatten(0, 1)


@dataclass
class Layer:
    """One layer of a :class:`RoutedMLP`.

    ``kind``:

    - ``env``: ``weight`` [E, in_p, out_p] per environment (small layers, e.g. the first
      and last of a vector field, whose per-environment weights cost less than a product),
      applied to each environment's N rows with one batched product over environments;
    - ``geps``: ``weight`` [K, in_p, out_p + r_p] = [W_k; B_k]ᵀ stacked, and ``context``
      [E, r_p, out_p] = (A_k diag(ξ_e))ᵀ: y = W_k x + A_k (ξ_e ⊙ B_k x);
    - ``coda``: ``weight`` [K, in_p, (1 + d_ξ) out_p] = [W_k; H_k,1; ...]ᵀ stacked, and
      ``context`` [E, d_ξ] = ξ_e: y = W_k x + Σ_c ξ_e,c H_k,c x.

    ``bias`` [E, out_p] is each environment's bias (with its context term). Per-environment
    tensors are in sorted environment order (:class:`Routing`) and never expanded to rows:
    row r belongs to environment r // N.
    """

    kind: str
    weight: Tensor
    bias: Tensor
    act: bool
    context: Tensor | None = None


@dataclass
class Step:
    """What an evaluation needs of one layer, prepared once per rollout (:meth:`RoutedMLP.plan`).

    ``bias`` is [E, 1, out_p] (broadcast over an environment's rows); ``coef`` the CoDA
    coefficients [E, 1, 1, 1 + d_ξ] = [1, ξ_e]. The matrices of the reverse products are made
    on first use (a rollout without gradient never needs them), contiguous: ``back`` the
    per-environment weight transposed (``env``) or the stacked expert weights transposed
    (``geps``, ``coda``), ``context_back`` the GEPS context map transposed.
    """

    index: int
    kind: str
    act: bool
    weight: Tensor
    bias: Tensor
    out_p: int
    context: Tensor | None = None
    coef: Tensor | None = None

    @cached_property
    def back(self) -> Tensor:
        return self.weight.detach().transpose(1, 2).contiguous()

    @cached_property
    def context_back(self) -> Tensor:
        return self.context.detach().transpose(1, 2).contiguous()


class RoutedMLP:
    """One rollout's expert network over rows sorted by expert (see the module docstring).

    Built by a bank's ``env_weights`` from :class:`Layer` s; ``out_dim`` is the unpadded
    output width. Evaluated by :meth:`forward` / :meth:`backward` on rows [R, in_p] = [E·N, in_p].
    """

    def __init__(self, routing: Routing, layers: Sequence[Layer], activation: str, act, out_dim):
        self.routing = routing
        self.n_envs = routing.expert_of_env.shape[0]
        self.layers = list(layers)
        self.activation = activation
        self.act = act
        self.act_backward = ACTIVATIONS[activation].backward
        self.in_dim = self.layers[0].weight.shape[1]
        self.out_dim = out_dim
        self.keys: list[tuple[int, str]] = []
        for i, layer in enumerate(self.layers):
            for name in ("weight", "bias", "context"):
                if getattr(layer, name) is not None:
                    self.keys.append((i, name))
        self._tensors = [getattr(self.layers[i], name) for i, name in self.keys]
        self._plan: tuple | None = None

    def tensors(self) -> list[Tensor]:
        """Every differentiable input, in the order of ``keys``."""
        return self._tensors

    def plan(self, tensors: Sequence[Tensor]) -> list[Step]:
        """One :class:`Step` per layer, built once per set of input tensors (the loops below
        run at every evaluation)."""
        if self._plan is not None and all(
            a is b for a, b in zip(self._plan[0], tensors, strict=True)
        ):
            return self._plan[1]
        per_layer: list[dict[str, Tensor]] = [{} for _ in self.layers]
        for (i, name), value in zip(self.keys, tensors, strict=True):
            per_layer[i][name] = value
        steps = []
        for i, (layer, t) in enumerate(zip(self.layers, per_layer, strict=True)):
            weight, context, bias = t["weight"], t.get("context"), t["bias"]
            step = Step(i, layer.kind, layer.act, weight, bias.unsqueeze(1), bias.shape[1], context)
            if layer.kind == "coda":
                ones = context.new_ones(context.shape[0], 1)
                step.coef = torch.cat([ones, context.detach()], dim=1)[:, None, None, :]
            steps.append(step)
        self._plan = (tuple(tensors), steps)
        return steps

    def keep_spec(self, needs: Sequence[bool]) -> list[tuple[bool, bool]]:
        """Per layer, whether the reverse pass will need its input rows h (for a weight
        gradient) and its product z (for a context gradient), given which inputs (order of
        ``keys``) need a gradient. What is not needed is not kept: a rollout's caches then
        hold a fraction of its activations, and their memory is reused while still hot."""
        wanted = {key for key, need in zip(self.keys, needs, strict=True) if need}
        return [
            ((i, "weight") in wanted, (i, "context") in wanted) for i in range(len(self.layers))
        ]

    # --- one evaluation, by hand ---

    def forward(self, x: Tensor, tensors: Sequence[Tensor], groups: RowGroups, keep=None):
        """x [R, in_p] (sorted rows) -> (f [R, out_p], cache or None).

        ``keep``: None (no reverse pass to come) or :meth:`keep_spec`. The output keeps the
        last layer's padded width; its padding columns are exactly 0.
        """
        cache = None if keep is None else []
        h = x
        n_env, n_rows = self.n_envs, groups.n_rows
        saves_output = ACTIVATIONS[self.activation].saves_output
        for s in self.plan(tensors):
            z = None
            if s.kind == "env":
                pre = torch.baddbmm(s.bias, h.view(n_env, n_rows, -1), s.weight)
            else:
                z = grouped_mm(h, s.weight, groups)
                out_p = s.out_p
                if s.kind == "geps":  # b_e + (A_k diag ξ_e)(B_k x), one product per environment
                    zb = z[:, out_p:]
                    pre = torch.baddbmm(s.bias, zb.view(n_env, n_rows, -1), s.context)
                    pre = pre.view(-1, out_p).add_(z[:, :out_p])
                    z = zb
                else:  # coda: Σ_c [1, ξ_e]_c (stacked map c) x, then b_e
                    blocks = z.view(n_env, n_rows, -1, out_p)
                    pre = torch.matmul(s.coef, blocks).squeeze(2).add_(s.bias)
            pre = pre.view(-1, s.out_p)
            out = self.act(pre) if s.act else pre
            if cache is not None:
                keep_h, keep_z = keep[s.index]
                if keep_z and s.kind == "geps":
                    z = z.contiguous()  # B_k x alone, so the full product can be freed
                saved = (out if saves_output else pre) if s.act else None
                cache.append((h if keep_h else None, saved, z if keep_z else None))
            h = out
        return h, cache

    def backward(self, cache, grad: Tensor, tensors, groups: RowGroups, acc: Accumulator):
        """Reverse of :meth:`forward`: grad [R, out(_p)] -> grad of x [R, in_p]. Parameter
        and context terms go to ``acc``."""
        g = grad
        n_env, n_rows = self.n_envs, groups.n_rows
        for s in reversed(self.plan(tensors)):
            h, saved, z = cache[s.index]
            if g.shape[1] != s.out_p:
                g = pad_last(g, s.out_p)
            if s.act:
                g = self.act_backward(g, saved)
            if s.kind == "env":
                acc.record(s.index, h, g, z)
                if s.index > 0 or acc.need_x:
                    g = torch.bmm(g.view(n_env, n_rows, -1), s.back).view(n_env * n_rows, -1)
                continue
            if s.kind == "geps":
                g_zb = torch.bmm(g.view(n_env, n_rows, -1), s.context_back)
                gz = torch.cat([g, g_zb.view(n_env * n_rows, -1)], dim=1)
            else:  # coda
                gz = g.view(n_env, n_rows, 1, -1) * s.coef.view(n_env, 1, -1, 1)
                gz = gz.view(n_env * n_rows, -1)
            acc.record(s.index, h, gz, z)
            if s.index > 0 or acc.need_x:
                g = grouped_mm(gz, s.back, groups)
        return g
