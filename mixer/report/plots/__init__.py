"""Figures of a benchmark, drawn from runs.csv and the cells' metrics.json (Agg backend).

Every figure in ``FIGURES`` is always written: a panel without data says so instead of
failing, so that a partial run still gives every figure. runs.csv itself must be readable
and hold the columns the figures need (``RUNS_COLUMNS``), else ``mixer plot`` stops with a
ConfigError. Each cell's data come from its ``run_dir/metrics.json`` only (see
``mixer.report.plots.frames``), family names from its dataset's meta.json; no model file is read.

Modules: ``cells`` (what is read), ``panels`` (layout, saving), ``scores`` (errors and cost),
``routing`` (gate, routing and contexts).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import seaborn as sns

from mixer.report.plots.frames import (
    RUNS_COLUMNS,
    clear_caches,
    gate_matrix,
    main_regime,
    per_env_frame,
    read_runs,
    routing_trace_frame,
)
from mixer.report.plots.panels import DPI, grid, no_data, save
from mixer.report.plots.routing import context_pca, gate_heatmap, routing_over_training
from mixer.report.plots.scores import (
    ERRORS,
    adaptation_per_env,
    cost_scaling,
    error_vs_regime,
    method_comparison,
)

FIGURES = (
    "method_comparison",
    "gate_heatmap",
    "routing_over_training",
    "context_pca",
    "error_vs_regime",
    "cost_scaling",
    "adaptation_per_env",
)
DRAW = {
    "method_comparison": method_comparison,
    "gate_heatmap": gate_heatmap,
    "routing_over_training": routing_over_training,
    "context_pca": context_pca,
    "error_vs_regime": error_vs_regime,
    "cost_scaling": cost_scaling,
    "adaptation_per_env": adaptation_per_env,
}

__all__ = [
    "DPI",
    "DRAW",
    "ERRORS",
    "FIGURES",
    "RUNS_COLUMNS",
    "gate_matrix",
    "main_regime",
    "make_figures",
    "per_env_frame",
    "read_runs",
    "routing_trace_frame",
]


def make_figures(runs_csv, out_dir, strict: bool = False) -> list[Path]:
    """Write every figure of ``FIGURES`` as ``out_dir/{name}.png``.

    Raises ConfigError when runs.csv cannot be read or lacks a column of ``RUNS_COLUMNS``.
    With ``strict=False`` (the workflow) a figure that fails to draw is written as a panel
    that names the error (the traceback goes to stderr); ``strict=True`` raises instead.
    """
    out_dir = Path(out_dir)
    runs = read_runs(runs_csv)
    clear_caches()
    written = []
    sns.set_theme(style="whitegrid", context="paper")
    try:
        for name in FIGURES:
            try:
                fig = DRAW[name](runs)
            except Exception as err:
                if strict:
                    raise
                traceback.print_exc(file=sys.stderr)
                fig, axes = grid(1, 1)
                no_data(axes[0, 0], f"{name}: could not draw\n{type(err).__name__}: {err}")
            fig.tight_layout()
            written.append(save(fig, out_dir / f"{name}.png"))
    finally:
        clear_caches()
    return written
