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
weights:

- ``plain``: ``W_k x + b_e``;
- ``geps``:  ``W_k x + A_k (ξ_e ⊙ (B_k x)) + b_e`` with W and B stacked into one product;
- ``coda``:  ``W_k x + Σ_c ξ_e,c (H_k,c x) + b_e`` with the (1 + d_ξ) maps stacked into one
  product (θ_e = θ_k + H_k ξ_e applied without forming θ_e's weights).

Its forward and reverse passes are written by hand (:meth:`RoutedMLP.forward`,
:meth:`RoutedMLP.backward`). :func:`field_function` wraps one evaluation as an autograd
function (used by adaptive solvers); :mod:`mixer.models.rollout` runs a whole fixed-step
rollout on them with one reverse pass, computing each weight gradient once per rollout as one
grouped product over all evaluations instead of once per evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

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


def small_layer(fan_in: int, fan_out: int) -> bool:
    """Whether per-environment weights beat a grouped product (a thin first/last layer)."""
    return min(fan_in, fan_out) <= 8


def env_to_rows(t: Tensor, n_rows: int) -> Tensor:
    """[E, ...] -> [E·N, ...], each environment's row repeated N times (a copy)."""
    return t.unsqueeze(1).expand(t.shape[0], n_rows, *t.shape[1:]).flatten(0, 1)


@dataclass
class Layer:
    """One layer of a :class:`RoutedMLP`.

    ``kind``:

    - ``rows``: ``weight`` [E, in_p, out_p] per environment (small layers, e.g. the first
      and last of a vector field, whose per-environment weights cost less than a product);
    - ``grouped``: ``weight`` [K, in_p, out_p] per expert, applied to each expert's rows;
    - ``geps``: ``weight`` [K, in_p, out_p + r_p] = [W_k; B_k]ᵀ stacked, and ``context``
      [E, r_p, out_p] = (A_k diag(ξ_e))ᵀ: y = W_k x + A_k (ξ_e ⊙ B_k x);
    - ``coda``: ``weight`` [K, in_p, (1 + d_ξ) out_p] = [W_k; H_k,1; ...]ᵀ stacked, and
      ``context`` [E, d_ξ] = ξ_e: y = W_k x + Σ_c ξ_e,c H_k,c x.

    ``bias`` [E, out_p] is each environment's bias (with its context term). Per-environment
    tensors are in sorted environment order (:class:`Routing`).
    """

    kind: str
    weight: Tensor
    bias: Tensor
    act: bool
    context: Tensor | None = None


_ACT_BACKWARD = {
    "silu": lambda g, pre, out: torch.ops.aten.silu_backward(g, pre),
    "gelu": lambda g, pre, out: torch.ops.aten.gelu_backward(g, pre),
    "softplus": lambda g, pre, out: torch.ops.aten.softplus_backward(g, pre, 1.0, 20.0),
    "tanh": lambda g, pre, out: torch.ops.aten.tanh_backward(g, out),
    "relu": lambda g, pre, out: torch.ops.aten.threshold_backward(g, out, 0.0),
}

_PER_ENV = {"weight": ("rows",), "bias": ("rows", "grouped", "geps", "coda"),
            "context": ("geps", "coda")}  # fmt: skip


class RoutedMLP:
    """One rollout's expert network over rows sorted by expert (see the module docstring).

    Built by a bank's ``env_weights`` from :class:`Layer` s; ``out_dim`` is the unpadded
    output width. Evaluated by :meth:`forward` / :meth:`backward` on rows [R, in_p].
    """

    def __init__(self, routing: Routing, layers: Sequence[Layer], activation: str, act, out_dim):
        self.routing = routing
        self.layers = list(layers)
        self.activation = activation
        self.act = act
        self.act_backward = _ACT_BACKWARD[activation]
        self.in_dim = self.layers[0].weight.shape[1]
        self.out_dim = out_dim
        self.keys: list[tuple[int, str]] = []
        for i, layer in enumerate(self.layers):
            for name in ("weight", "bias", "context"):
                if getattr(layer, name) is not None:
                    self.keys.append((i, name))
        self._row_tensors: dict[int, list[Tensor]] = {}
        self._plans: dict[int, tuple] = {}

    def tensors(self, n_rows: int) -> list[Tensor]:
        """Every differentiable input (order of ``keys``), per-environment ones expanded to
        rows: built once per N, then reused by every evaluation."""
        if n_rows not in self._row_tensors:
            out = []
            for i, name in self.keys:
                layer = self.layers[i]
                value = getattr(layer, name)
                out.append(env_to_rows(value, n_rows) if layer.kind in _PER_ENV[name] else value)
            self._row_tensors[n_rows] = out
        return self._row_tensors[n_rows]

    def plan(self, tensors: Sequence[Tensor]) -> list[tuple]:
        """Per layer (index, kind, act, weight, bias [R, 1, out_p], context, out_p), built
        once per set of row tensors (the loops below run at every evaluation)."""
        cached = self._plans.get(id(tensors))
        if cached is not None and cached[0] is tensors:
            return cached[1]
        per_layer: list[dict[str, Tensor]] = [{} for _ in self.layers]
        for (i, name), value in zip(self.keys, tensors, strict=True):
            per_layer[i][name] = value
        steps = []
        for i, (layer, t) in enumerate(zip(self.layers, per_layer, strict=True)):
            # Per-row matrices are also kept transposed: a batch of row-vector products
            # [R, 1, a] @ [R, a, b] is fast, the matrix-vector form [R, b, a] @ [R, a, 1] not.
            weight, context = t["weight"], t.get("context")
            back = weight.detach().transpose(1, 2).contiguous() if layer.kind == "rows" else None
            if layer.kind == "geps":
                back = context.detach().transpose(1, 2).contiguous()
            bias = t["bias"]
            steps.append(
                (i, layer.kind, layer.act, weight, bias.unsqueeze(1), context, bias.shape[1], back)
            )
        self._plans[id(tensors)] = (tensors, steps)
        return steps

    # --- one evaluation, by hand ---

    def forward(self, x: Tensor, tensors: Sequence[Tensor], groups: RowGroups, keep: bool):
        """x [R, in_p] (sorted rows) -> (f [R, out_p], cache or None).

        The output keeps the last layer's padded width; its padding columns are exactly 0.
        """
        cache = [] if keep else None
        h = x
        act = self.act
        for _, kind, use_act, w, b3, context, out_p, _ in self.plan(tensors):
            z = None
            if kind == "rows":
                pre = torch.baddbmm(b3, h.unsqueeze(1), w).squeeze(1)
            else:
                z = grouped_mm(h, w, groups)
                if kind == "geps":  # b_e + (A_k diag ξ_e)(B_k x), one batched product
                    pre = torch.baddbmm(b3, z[:, out_p:].unsqueeze(1), context).squeeze(1)
                    pre = pre.add_(z[:, :out_p])
                else:
                    pre = torch.add(z[:, :out_p], b3.squeeze(1))
                    if kind == "coda":
                        for c in range(context.shape[1]):
                            block = z[:, (c + 1) * out_p : (c + 2) * out_p]
                            pre = pre.addcmul_(context[:, c : c + 1], block)
            out = act(pre) if use_act else pre
            if keep:
                cache.append((h, pre, out, z))
            h = out
        return h, cache

    def backward(self, cache, grad: Tensor, tensors, groups: RowGroups, acc: Accumulator):
        """Reverse of :meth:`forward`: grad [R, out(_p)] -> grad of x [R, in_p]; parameter
        and context terms go to ``acc``."""
        g = grad
        act_backward = self.act_backward
        for i, kind, use_act, w, _, context, out_p, back in reversed(self.plan(tensors)):
            h, pre, out, z = cache[i]
            if g.shape[1] != out_p:
                g = pad_last(g, out_p)
            if use_act:
                g = act_backward(g, pre, out)
            acc.add_sum((i, "bias"), g)
            if kind == "rows":
                acc.add_outer_rows((i, "weight"), h, g)
                if i > 0 or acc.need_x:
                    g = torch.bmm(g.unsqueeze(1), back).squeeze(1)
                continue
            if kind == "geps":
                zb = z[:, out_p:]
                acc.add_outer_rows((i, "context"), zb, g)
                g_zb = torch.bmm(g.unsqueeze(1), back).squeeze(1)
                gz = torch.cat([g, g_zb], dim=1)
            elif kind == "coda":
                n_ctx = context.shape[1]
                blocks = z[:, out_p:].unflatten(1, (n_ctx, out_p))  # H_c x, [R, d_ξ, out_p]
                if acc.wants((i, "context")):
                    acc.add_sum((i, "context"), (blocks * g.unsqueeze(1)).sum(dim=2))
                gz = torch.cat([g.unsqueeze(1), g.unsqueeze(1) * context.unsqueeze(2)], 1)
                gz = gz.flatten(1)
            else:
                gz = g
            acc.add_outer((i, "weight"), h, gz)
            if i > 0 or acc.need_x:
                g = grouped_mm(gz, w.transpose(1, 2), groups)
        return g


class Accumulator:
    """Gradients of one RoutedMLP's inputs, summed over evaluations.

    Sums (biases, per-row terms) are added up as they come; per-expert weight gradients are
    stashed as (input, output-gradient) rows in buffers [R, evaluations, width] and reduced
    once in :meth:`finish`, as one grouped product over every evaluation.
    """

    def __init__(self, mlp: RoutedMLP, needs: Sequence[bool], need_x: bool, n_evals: int = 1):
        self.index = {key: i for i, key in enumerate(mlp.keys)}
        self.needs = list(needs)
        self.need_x = need_x
        self.n_evals = n_evals
        self.current = 0  # which evaluation the next pairs belong to (slot in the buffers)
        self.sums: dict = {}
        self.pairs: dict = {}

    def wants(self, key) -> bool:
        return key in self.index and self.needs[self.index[key]]

    def add_sum(self, key, value: Tensor) -> None:
        if not self.wants(key):
            return
        if key in self.sums:
            self.sums[key].add_(value)
        else:
            self.sums[key] = value.clone()

    def add_outer_rows(self, key, a: Tensor, g: Tensor) -> None:
        """Per-row a_r g_rᵀ [R, i, o], summed over evaluations."""
        if not self.wants(key):
            return
        if key in self.sums:
            self.sums[key].addcmul_(a.unsqueeze(2), g.unsqueeze(1))
        else:
            self.sums[key] = a.unsqueeze(2) * g.unsqueeze(1)

    def add_outer(self, key, a: Tensor, g: Tensor) -> None:
        """Per-expert Σ_r a_r g_rᵀ [K, i, o], reduced in :meth:`finish`."""
        if not self.wants(key):
            return
        if self.n_evals == 1:
            self.pairs[key] = (a, g)
            return
        if key not in self.pairs:  # row r's evaluations adjacent: groups stay contiguous
            self.pairs[key] = tuple(
                t.new_empty(t.shape[0], self.n_evals, t.shape[1]) for t in (a, g)
            )
        buf_a, buf_g = self.pairs[key]
        buf_a[:, self.current].copy_(a)
        buf_g[:, self.current].copy_(g)

    def finish(self, groups: RowGroups) -> list[Tensor | None]:
        grads: list[Tensor | None] = [None] * len(self.needs)
        for key, value in self.sums.items():
            grads[self.index[key]] = value
        for key, (a, g) in self.pairs.items():
            if self.n_evals > 1:
                a, g = a.flatten(0, 1), g.flatten(0, 1)
            grads[self.index[key]] = grouped_outer(a, g, groups, self.n_evals)
        return grads


class _FieldEval(torch.autograd.Function):
    """One evaluation of a RoutedMLP as an autograd node (for solvers other than ours)."""

    @staticmethod
    def forward(ctx, mlp: RoutedMLP, groups: RowGroups, keep: bool, x: Tensor, *tensors):
        out, cache = mlp.forward(x, tensors, groups, keep=keep)
        ctx.mlp, ctx.groups, ctx.cache, ctx.tensors = mlp, groups, cache, tensors
        return out[:, : mlp.out_dim]

    @staticmethod
    def backward(ctx, grad: Tensor):
        needs = ctx.needs_input_grad[4:]
        acc = Accumulator(ctx.mlp, needs, need_x=ctx.needs_input_grad[3])
        gx = ctx.mlp.backward(ctx.cache, grad, ctx.tensors, ctx.groups, acc)
        gx = gx if ctx.needs_input_grad[3] else None
        return (None, None, None, gx, *acc.finish(ctx.groups))


def field_function(mlp: RoutedMLP, x: Tensor) -> Tensor:
    """f(x) for x [E, N, d] in environment order, as a differentiable function."""
    n_rows = x.shape[1]
    groups = mlp.routing.rows(n_rows)
    rows = pad_last(mlp.routing.sort(x), mlp.in_dim)
    tensors = mlp.tensors(n_rows)
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (rows, *tensors))
    out = _FieldEval.apply(mlp, groups, keep, rows, *tensors)
    return mlp.routing.unsort(out, n_rows)
