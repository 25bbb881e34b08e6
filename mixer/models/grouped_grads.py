"""The reverse side of :class:`~mixer.models.grouped.RoutedMLP`: gradients recorded at each
evaluation and reduced once per rollout (:class:`Accumulator`), and one evaluation as an
autograd function (:func:`field_function`, for solvers that are not ours)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mixer.models.grouped import RoutedMLP, RowGroups, grouped_outer, pad_last


class Accumulator:
    """Gradients of one RoutedMLP's inputs, summed over evaluations.

    Each evaluation's reverse pass only records, per layer, what the gradients need (its
    output gradient, and its input rows h or its product z where kept); :meth:`finish`
    reduces them once, as one product per gradient over every evaluation: per expert Σ hᵀ g
    (a grouped product), per environment Σ hᵀ g, Σ zᵀ g or Σ g over the environment's rows.
    """

    def __init__(self, mlp: RoutedMLP, needs: Sequence[bool], need_x: bool):
        self.mlp = mlp
        self.index = {key: i for i, key in enumerate(mlp.keys)}
        self.needs = list(needs)
        self.need_x = need_x
        self.records: dict[int, list[tuple]] = {}
        self._wanted = [
            any(self.wants((i, name)) for name in ("weight", "bias", "context"))
            for i in range(len(mlp.layers))
        ]

    def wants(self, key) -> bool:
        return key in self.index and self.needs[self.index[key]]

    def record(self, layer: int, h: Tensor | None, g: Tensor, z: Tensor | None) -> None:
        """Layer ``layer``'s part of one evaluation: g its (stacked) output gradient."""
        if self._wanted[layer]:
            self.records.setdefault(layer, []).append((h, g, z))

    def finish(self, groups: RowGroups) -> list[Tensor | None]:
        grads: list[Tensor | None] = [None] * len(self.needs)
        n_env = self.mlp.n_envs
        for layer, rows in self.records.items():
            kind = self.mlp.layers[layer].kind
            out_p = self.mlp.layers[layer].bias.shape[1]

            def stacked(j: int, rows=rows) -> Tensor:
                """[R, evaluations, width]: row r's evaluations adjacent, so that expert
                blocks and environments stay contiguous."""
                return torch.stack([r[j] for r in rows], dim=1)

            G = stacked(1)
            G_env = G.view(n_env, -1, G.shape[-1])  # [E, N·evaluations, width]
            g_out = G_env[..., :out_p]
            if self.wants((layer, "bias")):
                grads[self.index[(layer, "bias")]] = g_out.sum(dim=1)
            if self.wants((layer, "weight")):
                H = stacked(0)
                if kind == "env":
                    weight = torch.bmm(H.view(n_env, -1, H.shape[-1]).transpose(1, 2), G_env)
                else:
                    weight = grouped_outer(H.flatten(0, 1), G.flatten(0, 1), groups, len(rows))
                grads[self.index[(layer, "weight")]] = weight
            if self.wants((layer, "context")):
                Z = stacked(2)
                Z = Z.view(n_env, -1, Z.shape[-1])
                if kind == "geps":  # Σ (B_k x) gᵀ per environment: [E, r_p, out_p]
                    context = torch.bmm(Z.transpose(1, 2), g_out)
                else:  # coda: Σ <H_k,c x, g> per environment and c: [E, d_ξ]
                    blocks = Z.unflatten(2, (-1, out_p))[:, :, 1:]
                    context = (blocks * g_out.unsqueeze(2)).sum(dim=(1, 3))
                grads[self.index[(layer, "context")]] = context
        return grads


class _FieldEval(torch.autograd.Function):
    """One evaluation of a RoutedMLP as an autograd node (for solvers other than ours)."""

    @staticmethod
    def forward(ctx, mlp: RoutedMLP, groups: RowGroups, keep: bool, x: Tensor, *tensors):
        spec = mlp.keep_spec(ctx.needs_input_grad[4:]) if keep else None
        out, cache = mlp.forward(x, tensors, groups, keep=spec)
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
    tensors = mlp.tensors()
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (rows, *tensors))
    out = _FieldEval.apply(mlp, groups, keep, rows, *tensors)
    return mlp.routing.unsort(out, n_rows)
