"""Validation error against training step, beside the authors' logged curves (literature.md's
figure, issue 25).

One panel per (dataset, method) of runs.csv whose cells logged their validation MSE during
training (``mse_val`` of train_log.csv: training's ``val_every`` > 0), default regime only as
the literature table. Each seed is one line against ``inner_steps``, its best-on-val point
marked; the authors' curves of the in-domain anchors of that learner on that dataset
(:mod:`mixer.report.literature_curves`) are drawn dashed. Theirs are test errors (their runs
validated on the test file), ours validation errors (fresh trajectories of the training
environments): the same quantity on different draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mixer.report.literature_curves import anchor_datasets
from mixer.report.plots.panels import panel_grid, save

EMPTY = "no validation curve logged\n(training's val_every is 0)"


def train_curve(run_dir) -> pd.DataFrame | None:
    """(inner_steps, mse_val) of the scored rows of a cell's train_log.csv, or None."""
    path = Path(run_dir) / "train_log.csv"
    if not path.is_file():
        return None
    log = pd.read_csv(path)
    if "mse_val" not in log.columns:
        return None
    log = log[np.isfinite(pd.to_numeric(log["mse_val"], errors="coerce"))]
    return None if log.empty else log[["inner_steps", "mse_val"]].astype(float)


def _their_curves(anchors: pd.DataFrame, curves: pd.DataFrame, dataset: str, learner: str):
    """The authors' in-domain curves [(label, steps, values)] for a dataset and learner."""
    if curves is None or curves.empty:
        return []
    found = []
    for _, anchor in anchors.iterrows():
        if (
            dataset not in anchor_datasets(anchor)
            or anchor["learner"] != learner
            or anchor["metric"] != "mse_id"
        ):
            continue
        for run, curve in curves[curves["anchor"] == anchor.get("anchor", "")].groupby("run"):
            label = f"{anchor['anchor']} {run}".strip()
            found.append((label, curve["step"].to_numpy(), curve["value"].to_numpy()))
    return found


def draw_learning_curves(runs: pd.DataFrame, anchors, curves, out_png) -> Path:
    """The figure of every (dataset, method) with logged validation errors, into ``out_png``."""
    ok = runs[(runs["regime"] == "default") & (runs["status"] == "ok")]
    panels = []
    for (dataset, method), group in ok.groupby(["dataset", "method"], sort=True):
        seeds = [(row["seed"], train_curve(row["run_dir"])) for _, row in group.iterrows()]
        seeds = [(seed, log) for seed, log in seeds if log is not None]
        if seeds:
            learner = group["learner"].iloc[0] if "learner" in group else method
            panels.append(
                (dataset, method, seeds, _their_curves(anchors, curves, dataset, learner))
            )
    fig, axes = panel_grid(len(panels), 3, 4.6, 3.4, EMPTY)
    for ax, (dataset, method, seeds, theirs) in zip(axes, panels, strict=True):
        for seed, log in seeds:
            (line,) = ax.plot(log["inner_steps"], log["mse_val"], label=f"ours, seed {seed}")
            best = log["mse_val"].idxmin()
            ax.plot(
                log.loc[best, "inner_steps"], log.loc[best, "mse_val"], "o", color=line.get_color()
            )
        for label, steps, values in theirs:
            ax.plot(steps, values, "--", color="0.35", linewidth=1, label=f"authors, {label}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{dataset} · {method}", fontsize=9)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("MSE (ours val, theirs test)")
        ax.legend(fontsize=6)
    fig.suptitle("Error during training (dot: best on val)", fontsize=10)
    fig.tight_layout()
    return save(fig, Path(out_png))
