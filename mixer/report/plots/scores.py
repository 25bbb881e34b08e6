"""Figures of errors and cost: per method, per data regime, per adaptation environment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from mixer.report.plots.frames import in_order, main_regime, ok_rows, per_env_frame
from mixer.report.plots.panels import grid, metric_grid, no_data
from mixer.report.statistics import on_log_scale

ERRORS = ("rel_mse_id", "rel_mse_ood")


def geometric_mean(values) -> float:
    return float(10.0 ** np.mean(np.log10(values)))


def geometric_sd_band(values) -> tuple[float, float]:
    """Geometric mean ×/÷ 10^sd of log10 (the seeds' spread on the scale errors live on)."""
    logs = np.log10(np.asarray(values, dtype=float))
    spread = logs.std(ddof=1) if len(logs) > 1 else 0.0
    return float(10.0 ** (logs.mean() - spread)), float(10.0 ** (logs.mean() + spread))


def aggregation(metric: str, data: pd.DataFrame) -> dict:
    """seaborn's estimator/errorbar for a metric: errors (all positive) on log10, as in the
    summary tables; anything else the arithmetic mean ± sd."""
    if on_log_scale(metric) and (data["value"] > 0).all():
        return {"estimator": geometric_mean, "errorbar": geometric_sd_band}
    return {"estimator": "mean", "errorbar": "sd"}


def method_comparison(runs: pd.DataFrame):
    """Error per method (bars: geometric mean ×/÷ the sd of log10 over seeds for errors,
    mean ± sd for scores; dots: seeds), one column per dataset."""
    metrics = [m for m in (*ERRORS, "routing_purity") if m in runs.columns]

    def draw(ax, data, here, dataset, metric):
        methods = in_order(here["method"])
        labels = [
            f"{m}\n{(here[here['method'] == m]['status'] == 'ok').sum()}"
            f"/{(here['method'] == m).sum()} ok"
            for m in methods
        ]
        kwargs = dict(data=data, x="method", y="value", hue="regime", order=methods)
        sns.barplot(**kwargs, **aggregation(metric, data), ax=ax, alpha=0.7)
        sns.stripplot(**kwargs, dodge=True, palette="dark:k", size=3, legend=False, ax=ax)
        ax.set_xticks(range(len(methods)), labels, fontsize=7)
        if metric.startswith(("rel_mse", "mse")) and (data["value"] > 0).all():
            ax.set_yscale("log")
        ax.set(title=f"{dataset}", xlabel="", ylabel=metric)

    return metric_grid(runs, metrics or list(ERRORS), draw)


def error_vs_regime(runs: pd.DataFrame):
    """Relative errors per data regime and method (geometric mean ×/÷ sd of log10 over seeds)."""

    def draw(ax, data, here, dataset, metric):
        sns.pointplot(
            data=data,
            x="regime",
            y="value",
            hue="method",
            order=in_order(here["regime"]),
            **aggregation(metric, data),
            dodge=0.3 if data["method"].nunique() > 1 else False,
            ax=ax,
        )
        if (data["value"] > 0).all():
            ax.set_yscale("log")
        ax.set(title=dataset, ylabel=metric)

    return metric_grid(runs, ERRORS, draw)


def cost_scaling(runs: pd.DataFrame):
    """Seconds per outer step against the number of experts K and of training environments E.

    Read from the cells' metrics: K and E vary only where the config's regimes vary them
    (benchmarks/bench_cost.py measures the controlled scaling).
    """
    fig, axes = grid(1, 2)
    data = ok_rows(runs)
    if "seconds_per_outer_step" in data.columns:
        data = data.assign(
            seconds=pd.to_numeric(data["seconds_per_outer_step"], errors="coerce"),
            K=pd.to_numeric(data.get("n_experts", pd.Series(dtype=float)), errors="coerce"),
            E=pd.to_numeric(data.get("n_train_envs", pd.Series(dtype=float)), errors="coerce"),
        )
    for ax, axis, label in zip(
        axes[0], ("K", "E"), ("experts K", "training environments E"), strict=True
    ):
        if axis not in data.columns or data[[axis, "seconds"]].dropna().empty:
            no_data(ax, f"seconds per outer step vs {label}: no data")
            continue
        points = data.dropna(subset=[axis, "seconds"])
        style = "dataset" if points["dataset"].nunique() > 1 else None
        sns.lineplot(
            data=points,
            x=axis,
            y="seconds",
            hue="method",
            style=style,
            errorbar="sd",
            marker="o",
            ax=ax,
        )
        ax.set(xlabel=label, ylabel="seconds per outer step", yscale="log")
        # Many methods x datasets: the legend goes beside the panel, not over the lines.
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.set_size_inches(11, 3.6)
    fig.tight_layout()
    return fig


def adaptation_per_env(runs: pd.DataFrame):
    """Relative adaptation MSE per new environment, inside vs outside the training range."""
    frame = per_env_frame(runs)
    datasets = in_order(runs["dataset"])
    fig, axes = grid(1, len(datasets), 5.0, 3.6)
    for j, dataset in enumerate(datasets or [None]):
        ax = axes[0, j]
        here = frame[frame["dataset"] == dataset] if len(frame) else frame
        if here.empty:
            no_data(ax, f"{dataset or ''}\nno adapted environments")
            continue
        methods = in_order(runs.loc[runs["dataset"] == dataset, "method"])
        # A fixed hue order so that "in range" has the same colour in every panel.
        ranges = [
            r for r in ("in range", "out of range", "unknown") if r in set(here["training range"])
        ]
        kwargs = dict(
            data=here,
            x="method",
            y="rel_mse_ood",
            hue="training range",
            hue_order=ranges,
            order=methods,
        )
        sns.boxplot(**kwargs, ax=ax, fliersize=0)
        sns.stripplot(**kwargs, dodge=True, palette="dark:k", size=2.5, legend=False, ax=ax)
        if (here["rel_mse_ood"] > 0).all():
            ax.set_yscale("log")
        ax.set(title=f"{dataset} ({main_regime(runs, dataset)})", xlabel="")
        ax.tick_params(axis="x", labelsize=7)
    return fig
