"""Figures of routing and contexts: gate heatmaps, routing over training, context PCA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from mixer.report.plots.frames import (
    cell_contexts,
    family_labels,
    family_names,
    first_ok_cells,
    gate_matrix,
    in_order,
    int_or,
    main_regime,
    routing_trace_frame,
)
from mixer.report.plots.panels import grid, no_data, panel_grid


def _families(row, n_envs: int) -> np.ndarray:
    """The cell's family labels, or one family when its metrics do not give them."""
    found = family_labels(row, n_envs)
    return found if found is not None else np.zeros(n_envs, dtype=int)


def _title(dataset, regime, method, row) -> str:
    return f"{dataset} / {method} ({regime}, seed {int(row['seed'])})"


def gate_heatmap(runs: pd.DataFrame):
    """Environments × experts (lowest-seed ok cell, main regime); lines mark family changes."""
    panels = []
    for dataset, regime, method, row in first_ok_cells(runs):
        routed = row is not None and int_or(row.get("n_experts"), 2) > 1  # K = 1: nothing to show
        found = gate_matrix(row) if routed else None
        if found is not None:
            panels.append((dataset, regime, method, row, *found))
    empty = "gate heatmap: no cell with a gate or routing"
    fig, axes = panel_grid(len(panels), 3, 3.6, 4.2, empty)
    for ax, (dataset, regime, method, row, matrix, what) in zip(axes, panels, strict=True):
        family = _families(row, len(matrix))
        order = np.argsort(family, kind="stable")
        matrix, family = matrix[order], family[order]
        sns.heatmap(matrix, ax=ax, vmin=0, vmax=1, cmap="viridis", cbar_kws={"label": what})
        changes = np.flatnonzero(family[1:] != family[:-1]) + 1
        for edge in changes:
            ax.axhline(edge, color="w", lw=2)
        starts = np.concatenate([[0], changes])
        ends = np.concatenate([changes, [len(family)]])
        names = family_names(row, family[starts])
        ax.set_yticks((starts + ends) / 2, names, rotation=0, fontsize=7)
        ax.set(
            title=_title(dataset, regime, method, row),
            xlabel="expert",
            ylabel="environments by family",
        )
        ax.title.set_fontsize(8)
    return fig


def routing_over_training(runs: pd.DataFrame):
    """Routing ARI and share of rerouted environments per outer step (mean ± sd over seeds)."""
    frame = routing_trace_frame(runs)
    datasets = in_order(runs["dataset"])
    fig, axes = grid(2, len(datasets))
    for j, dataset in enumerate(datasets or [None]):
        here = frame[frame["dataset"] == dataset] if len(frame) else frame
        for i, what in enumerate(("routing ARI", "share rerouted")):
            ax = axes[i, j]
            if here.empty:
                no_data(ax, f"{dataset or ''}\nno routing trace")
                continue
            sns.lineplot(
                data=here, x="outer step", y=what, hue="method", errorbar="sd", ax=ax, marker="o"
            )
            ax.set_title(f"{dataset} ({main_regime(runs, dataset)})")
    return fig


def context_pca(runs: pd.DataFrame):
    """First two principal components of the training contexts, coloured by family."""
    panels = []
    for dataset, regime, method, row in first_ok_cells(runs):
        ctx = cell_contexts(row) if row is not None else None
        if ctx is not None:
            panels.append((dataset, regime, method, row, ctx))
    fig, axes = panel_grid(len(panels), 4, 3.4, 3.2, "context PCA: no cell with contexts")
    for ax, (dataset, regime, method, row, ctx) in zip(axes, panels, strict=True):
        centred = ctx - ctx.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        points = centred @ vt[:2].T
        if points.shape[1] == 1:
            points = np.column_stack([points[:, 0], np.zeros(len(points))])
        share = singular**2 / max((singular**2).sum(), 1e-30)
        family = family_names(row, _families(row, len(ctx)))
        sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=family, ax=ax, s=25)
        ax.legend(fontsize=6, loc="best")
        pc2 = f"{share[1]:.0%}" if len(share) > 1 else "0%"
        ax.set(xlabel=f"PC1 ({share[0]:.0%})", ylabel=f"PC2 ({pc2})")
        ax.set_title(_title(dataset, regime, method, row), fontsize=8)
    return fig
