"""Figure layout shared by the figures: grids of panels, empty panels, atomic saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mixer.records.atomic import atomic_write
from mixer.report.plots.frames import in_order, ok_rows

DPI = 110


def no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def grid(n_rows: int, n_cols: int, width: float = 4.0, height: float = 3.2):
    """(figure, axes [n_rows, n_cols]) with panels of ``width`` × ``height`` inches."""
    n_rows, n_cols = max(n_rows, 1), max(n_cols, 1)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False
    )
    return fig, axes


def panel_grid(n_panels: int, max_cols: int, width: float, height: float, empty: str):
    """(figure, the n panels' axes), at most ``max_cols`` a row, spare axes hidden.

    Without panels: one panel that says ``empty``, and no axes to draw on.
    """
    if not n_panels:
        fig, axes = grid(1, 1)
        no_data(axes[0, 0], empty)
        return fig, []
    n_cols = min(n_panels, max_cols)
    fig, axes = grid(-(-n_panels // n_cols), n_cols, width, height)
    for ax in axes.flat[n_panels:]:
        ax.axis("off")
    return fig, list(axes.flat[:n_panels])


def metric_values(here: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """The ok rows of ``here`` with a finite ``metric``, as column ``value``; None if none."""
    if metric not in here.columns:
        return None
    data = ok_rows(here)
    data = data.assign(value=pd.to_numeric(data[metric], errors="coerce"))
    data = data[np.isfinite(data["value"])]
    return None if data.empty else data


def metric_grid(runs: pd.DataFrame, metrics, draw):
    """A figure with a panel per metric (rows) and dataset (columns).

    ``draw(ax, data, here, dataset, metric)`` fills a panel from ``data``, the ok rows of the
    dataset's rows ``here`` with a finite ``metric`` (column ``value``); a panel without such
    rows says so.
    """
    datasets = in_order(runs["dataset"])
    fig, axes = grid(len(metrics), len(datasets))
    for j, dataset in enumerate(datasets or [None]):
        here = runs[runs["dataset"] == dataset]
        for i, metric in enumerate(metrics):
            data = metric_values(here, metric)
            if data is None:
                no_data(axes[i, j], f"{dataset or ''}\n{metric}: no data")
            else:
                draw(axes[i, j], data, here, dataset, metric)
    return fig


def save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI))
    finally:
        plt.close(fig)
