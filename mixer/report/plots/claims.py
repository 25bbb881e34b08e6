"""The figure of the three claims, one row each, from runs.csv and the config's ``claims`` block:
(a) error against training trajectories per method, (b) error and routing purity against the
number of families, (c) the context score on the clear and the blurred hierarchy. Seeds are
dots; errors are drawn on log axes with their geometric mean ×/÷ the sd of log10 (as the
tables aggregate them), scores with their mean ± sd. Every cell that is not ok is left out
here and counted in claims.md.
"""

from __future__ import annotations

import seaborn as sns

from mixer.report.plots.panels import grid, metric_values, no_data, save
from mixer.report.plots.scores import aggregation


def _sweep(ax, runs, dataset, regimes, methods, metric, title) -> None:
    """One metric of some methods over an ordered list of regimes of one dataset."""
    here = runs[
        (runs["dataset"] == dataset) & runs["regime"].isin(regimes) & runs["method"].isin(methods)
    ]
    data = metric_values(here, metric)
    if data is None:
        no_data(ax, f"{title}\nno ok cell with {metric}")
        return
    order = [r for r in regimes if r in set(data["regime"])]
    hue = [m for m in methods if m in set(data["method"])]
    common = dict(data=data, x="regime", y="value", hue="method", order=order, hue_order=hue)
    sns.pointplot(**common, **aggregation(metric, data), dodge=0.3, ax=ax)
    sns.stripplot(**common, dodge=0.3, palette="dark:k", size=2.5, legend=False, ax=ax)
    if aggregation(metric, data)["errorbar"] != "sd":
        ax.set_yscale("log")
    ax.set(xlabel="", ylabel=metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, frameon=False)


def _hierarchy(ax, runs, spec) -> None:
    datasets, metric = [spec["clear"], spec["blurred"]], spec["metric"]
    here = runs[
        runs["dataset"].isin(datasets)
        & (runs["regime"] == spec["regime"])
        & runs["method"].isin(spec["methods"])
    ]
    data = metric_values(here, metric)
    if data is None:
        no_data(ax, f"(c) no ok cell with {metric}")
        return
    common = dict(data=data, x="method", y="value", hue="dataset", hue_order=datasets)
    sns.barplot(**common, errorbar="sd", alpha=0.7, ax=ax)
    sns.stripplot(**common, dodge=True, palette="dark:k", size=3, legend=False, ax=ax)
    ax.set(title="(c) clear vs blurred hierarchy", xlabel="", ylabel=metric)
    ax.legend(fontsize=6, frameon=False)


def claims_figure(runs, claims: dict):
    """A row per claim: (a) a panel per dataset, (b) error and purity, (c) one panel."""
    claims = claims or {}
    a, b, c = claims.get("data_regime"), claims.get("scaling"), claims.get("hierarchy")
    n_cols = max(len(a["datasets"]) if a else 1, 2)
    fig, axes = grid(3, n_cols, 4.2, 3.2)
    for ax in axes.flat:
        ax.axis("off")
    if a:
        methods = [a["mixer"], *a["meta_learners"]]
        for ax, dataset in zip(axes[0], a["datasets"], strict=False):
            ax.axis("on")
            title = f"(a) {dataset}: vs trajectories"
            _sweep(ax, runs, dataset, a["regimes"], methods, a["metric"], title)
    if b:
        methods = [b["mixer"], b["naive"]]
        for ax, metric in zip(axes[1], (b["metric"], "routing_purity"), strict=False):
            ax.axis("on")
            title = f"(b) {b['dataset']}: vs families"
            _sweep(ax, runs, b["dataset"], b["regimes"], methods, metric, title)
    if c:
        axes[2, 0].axis("on")
        _hierarchy(axes[2, 0], runs, c)
    fig.tight_layout()
    return fig


def write_claims_figure(runs, claims: dict, path) -> None:
    save(claims_figure(runs, claims), path)
