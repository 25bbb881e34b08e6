"""Figures of a benchmark, drawn from runs.csv and the cells' own files (Agg backend).

Every figure in ``FIGURES`` is always written: a panel without data says so instead of
failing, so that a partial run still gives every figure. Per-cell files are read from the
``run_dir`` column of runs.csv: ``metrics.json`` (per-environment errors), ``routing.npz``
(routing after each outer step, family labels) and ``model.pt`` (contexts and gate).
"""

from __future__ import annotations

import json
import sys
import traceback
from functools import cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

FIGURES = (
    "method_comparison",
    "gate_heatmap",
    "routing_over_training",
    "context_pca",
    "error_vs_regime",
    "cost_scaling",
    "adaptation_per_env",
)
ERRORS = ("rel_mse_id", "rel_mse_ood")
DPI = 110


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(n_rows: int, n_cols: int, width: float = 4.0, height: float = 3.2):
    n_rows, n_cols = max(n_rows, 1), max(n_cols, 1)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False
    )
    return fig, axes


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def _order(values) -> list:
    return list(dict.fromkeys(values))


def main_regime(runs: pd.DataFrame, dataset: str) -> str | None:
    """The regime a per-cell figure shows: 'default' if the dataset has it, else the first."""
    regimes = _order(runs.loc[runs["dataset"] == dataset, "regime"])
    if not regimes:
        return None
    return "default" if "default" in regimes else regimes[0]


def _first_ok_cells(runs: pd.DataFrame):
    """(dataset, method, row) of the lowest-seed ok cell of each method in the main regime."""
    for dataset in _order(runs["dataset"]):
        regime = main_regime(runs, dataset)
        here = runs[(runs["dataset"] == dataset) & (runs["regime"] == regime)]
        for method in _order(here["method"]):
            ok = _ok(here[here["method"] == method]).sort_values("seed")
            yield dataset, regime, method, (ok.iloc[0] if len(ok) else None)


@cache
def _load_model(run_dir: str) -> dict | None:
    import torch

    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def _load_routing(run_dir: str) -> dict | None:
    path = Path(run_dir) / "routing.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@cache
def _family_names(dataset_dir: str | None) -> dict[int, str]:
    """Family index -> name from the dataset's meta.json (empty when it cannot be read)."""
    if not dataset_dir:
        return {}
    try:
        meta = json.loads((Path(dataset_dir) / "meta.json").read_text())
        return {int(e["family_index"]): str(e["family"]) for e in meta["environments"]}
    except (OSError, KeyError, TypeError, ValueError):
        return {}


def _int(value, default: int) -> int:
    try:
        return int(value) if pd.notna(value) else default
    except (TypeError, ValueError):
        return default


def _names(row, family) -> list[str]:
    where = row.get("provenance.dataset") if row is not None else None
    names = _family_names(where if isinstance(where, str) else None)
    return [names.get(int(f), f"family {int(f)}") for f in family]


def _to_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _contexts(row) -> np.ndarray | None:
    state = _load_model(str(row["run_dir"]))
    ctx = ((state or {}).get("learner") or {}).get("ctx")
    if ctx is None:
        return None
    ctx = _to_numpy(ctx).astype(float)
    return ctx if ctx.ndim == 2 and ctx.shape[1] > 0 else None


def gate_matrix(row) -> tuple[np.ndarray, str] | None:
    """[E, K] gate probabilities softmax([ξ; 1] W), else the final one-hot routing."""
    state = _load_model(str(row["run_dir"]))
    learner = (state or {}).get("learner") or {}
    gate = (learner.get("model") or {}).get("gate")
    ctx = _contexts(row)
    if gate is not None and ctx is not None:
        gate = _to_numpy(gate).astype(float)
        if gate.ndim == 2 and gate.shape[0] == ctx.shape[1] + 1 and gate.shape[1] > 1:
            logits = ctx @ gate[:-1] + gate[-1]
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            return probs / probs.sum(axis=1, keepdims=True), "gate probability"
    routing = _load_routing(str(row["run_dir"]))
    if routing is not None and routing["routing"].size:
        last = routing["routing"][-1].astype(int)
        n_experts = _int(row.get("n_experts"), last.max() + 1)
        return np.eye(max(n_experts, last.max() + 1))[last], "routed expert (one-hot)"
    return None


def _family_of(row, n_envs: int) -> np.ndarray:
    routing = _load_routing(str(row["run_dir"]))
    if routing is not None and len(routing.get("family", [])) == n_envs:
        return routing["family"].astype(int)
    return np.zeros(n_envs, dtype=int)


# ---- the figures -------------------------------------------------------------------------


def method_comparison(runs: pd.DataFrame):
    """Error per method (bars: mean ± sd over seeds, dots: seeds), one column per dataset."""
    datasets = _order(runs["dataset"])
    metrics = [m for m in (*ERRORS, "routing_purity") if m in runs.columns]
    metrics = metrics or list(ERRORS)
    fig, axes = _grid(len(metrics), len(datasets))
    for j, dataset in enumerate(datasets or [None]):
        here = runs[runs["dataset"] == dataset]
        methods = _order(here["method"])
        labels = {
            m: f"{m}\n{(here[here['method'] == m]['status'] == 'ok').sum()}"
            f"/{(here['method'] == m).sum()} ok"
            for m in methods
        }
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            data = _ok(here)
            if metric in data.columns:
                data = data.assign(value=pd.to_numeric(data[metric], errors="coerce"))
                data = data[np.isfinite(data["value"])]
            if dataset is None or metric not in data.columns or data.empty:
                _no_data(ax, f"{dataset or ''}\n{metric}: no data")
                continue
            kwargs = dict(data=data, x="method", y="value", hue="regime", order=methods)
            sns.barplot(**kwargs, errorbar="sd", ax=ax, alpha=0.7)
            sns.stripplot(**kwargs, dodge=True, palette="dark:k", size=3, legend=False, ax=ax)
            ax.set_xticks(range(len(methods)), [labels[m] for m in methods], fontsize=7)
            if metric.startswith(("rel_mse", "mse")) and (data["value"] > 0).all():
                ax.set_yscale("log")
            ax.set(title=f"{dataset}", xlabel="", ylabel=metric)
    return fig


def gate_heatmap(runs: pd.DataFrame):
    """Environments × experts (lowest-seed ok cell, main regime); lines mark family changes."""
    panels = []
    for dataset, regime, method, row in _first_ok_cells(runs):
        routed = row is not None and _int(row.get("n_experts"), 2) > 1  # K = 1: nothing to show
        found = gate_matrix(row) if routed else None
        if found is not None:
            panels.append((dataset, regime, method, row, *found))
    if not panels:
        fig, axes = _grid(1, 1)
        _no_data(axes[0, 0], "gate heatmap: no cell with a gate or routing")
        return fig
    n_cols = min(len(panels), 3)
    n_rows = -(-len(panels) // n_cols)
    fig, axes = _grid(n_rows, n_cols, 3.6, 4.2)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (dataset, regime, method, row, matrix, what) in zip(axes.flat, panels, strict=False):
        family = _family_of(row, len(matrix))
        order = np.argsort(family, kind="stable")
        matrix, family = matrix[order], family[order]
        sns.heatmap(matrix, ax=ax, vmin=0, vmax=1, cmap="viridis", cbar_kws={"label": what})
        changes = np.flatnonzero(family[1:] != family[:-1]) + 1
        for edge in changes:
            ax.axhline(edge, color="w", lw=2)
        starts = np.concatenate([[0], changes])
        ends = np.concatenate([changes, [len(family)]])
        names = _names(row, family[starts])
        ax.set_yticks((starts + ends) / 2, names, rotation=0, fontsize=7)
        ax.set(
            title=f"{dataset} / {method} ({regime}, seed {int(row['seed'])})",
            xlabel="expert",
            ylabel="environments by family",
        )
        ax.title.set_fontsize(8)
    return fig


def routing_trace_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per outer step of every ok mixture cell: routing ARI vs family, share rerouted."""
    from sklearn.metrics import adjusted_rand_score

    rows = []
    for _, row in _ok(runs).iterrows():
        if row["regime"] != main_regime(runs, row["dataset"]):
            continue
        routing = _load_routing(str(row["run_dir"]))
        if routing is None or routing["routing"].ndim != 2 or not len(routing["routing"]):
            continue
        trace, family = routing["routing"], routing["family"]
        if len(np.unique(trace)) < 2 and _int(row.get("n_experts"), 1) < 2:
            continue  # one expert: nothing is routed
        for step, assigned in enumerate(trace):
            moved = (assigned != trace[step - 1]).mean() if step else np.nan
            rows.append(
                {
                    "dataset": row["dataset"],
                    "method": row["method"],
                    "seed": row["seed"],
                    "outer step": step + 1,
                    "routing ARI": adjusted_rand_score(family, assigned),
                    "share rerouted": moved,
                }
            )
    return pd.DataFrame(rows)


def routing_over_training(runs: pd.DataFrame):
    """Routing ARI and share of rerouted environments per outer step (mean ± sd over seeds)."""
    frame = routing_trace_frame(runs)
    datasets = _order(runs["dataset"])
    fig, axes = _grid(2, len(datasets))
    for j, dataset in enumerate(datasets or [None]):
        here = frame[frame["dataset"] == dataset] if len(frame) else frame
        for i, what in enumerate(("routing ARI", "share rerouted")):
            ax = axes[i, j]
            if here.empty:
                _no_data(ax, f"{dataset or ''}\nno routing trace")
                continue
            sns.lineplot(
                data=here, x="outer step", y=what, hue="method", errorbar="sd", ax=ax, marker="o"
            )
            ax.set_title(f"{dataset} ({main_regime(runs, dataset)})")
    return fig


def context_pca(runs: pd.DataFrame):
    """First two principal components of the training contexts, coloured by family."""
    panels = []
    for dataset, regime, method, row in _first_ok_cells(runs):
        ctx = _contexts(row) if row is not None else None
        if ctx is not None:
            panels.append((dataset, regime, method, row, ctx))
    if not panels:
        fig, axes = _grid(1, 1)
        _no_data(axes[0, 0], "context PCA: no cell with contexts")
        return fig
    n_cols = min(len(panels), 4)
    n_rows = -(-len(panels) // n_cols)
    fig, axes = _grid(n_rows, n_cols, 3.4, 3.2)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (dataset, regime, method, row, ctx) in zip(axes.flat, panels, strict=False):
        centred = ctx - ctx.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        points = centred @ vt[:2].T
        if points.shape[1] == 1:
            points = np.column_stack([points[:, 0], np.zeros(len(points))])
        share = singular**2 / max((singular**2).sum(), 1e-30)
        family = _names(row, _family_of(row, len(ctx)))
        sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=family, ax=ax, s=25)
        ax.legend(fontsize=6, loc="best")
        pc2 = f"{share[1]:.0%}" if len(share) > 1 else "0%"
        ax.set(xlabel=f"PC1 ({share[0]:.0%})", ylabel=f"PC2 ({pc2})")
        ax.set_title(f"{dataset} / {method} ({regime}, seed {int(row['seed'])})", fontsize=8)
    return fig


def error_vs_regime(runs: pd.DataFrame):
    """Relative errors per data regime and method (mean ± sd over seeds)."""
    datasets = _order(runs["dataset"])
    fig, axes = _grid(len(ERRORS), len(datasets))
    for j, dataset in enumerate(datasets or [None]):
        here = runs[runs["dataset"] == dataset]
        regimes = _order(here["regime"])
        for i, metric in enumerate(ERRORS):
            ax = axes[i, j]
            data = _ok(here)
            if metric in data.columns:
                data = data.assign(value=pd.to_numeric(data[metric], errors="coerce"))
                data = data[np.isfinite(data["value"])]
            if dataset is None or metric not in data.columns or data.empty:
                _no_data(ax, f"{dataset or ''}\n{metric}: no data")
                continue
            sns.pointplot(
                data=data,
                x="regime",
                y="value",
                hue="method",
                order=regimes,
                errorbar="sd",
                dodge=0.3 if data["method"].nunique() > 1 else False,
                ax=ax,
            )
            if (data["value"] > 0).all():
                ax.set_yscale("log")
            ax.set(title=dataset, ylabel=metric)
    return fig


def cost_scaling(runs: pd.DataFrame):
    """Seconds per outer step against the number of experts K and of training environments E.

    Read from the cells' metrics: K and E vary only where the config's regimes vary them
    (benchmarks/bench_cost.py measures the controlled scaling).
    """
    fig, axes = _grid(1, 2)
    data = _ok(runs)
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
            _no_data(ax, f"seconds per outer step vs {label}: no data")
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


def per_env_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Adaptation error of every adaptation environment of every ok cell (main regime)."""
    rows = []
    for _, row in _ok(runs).iterrows():
        if row["regime"] != main_regime(runs, row["dataset"]):
            continue
        path = Path(str(row["run_dir"])) / "metrics.json"
        try:
            ood = json.loads(path.read_text())["per_env"]["ood"]
        except (OSError, KeyError, TypeError, ValueError):
            continue
        inside = ood.get("in_training_range") or [None] * len(ood["rel_mse"])
        for env, error, flag in zip(ood["env_id"], ood["rel_mse"], inside, strict=True):
            where = "unknown" if flag is None else ("in range" if flag else "out of range")
            rows.append(
                {
                    "dataset": row["dataset"],
                    "method": row["method"],
                    "seed": row["seed"],
                    "env_id": env,
                    "rel_mse_ood": error,
                    "training range": where,
                }
            )
    return pd.DataFrame(rows)


def adaptation_per_env(runs: pd.DataFrame):
    """Relative adaptation MSE per new environment, inside vs outside the training range."""
    frame = per_env_frame(runs)
    datasets = _order(runs["dataset"])
    fig, axes = _grid(1, len(datasets), 5.0, 3.6)
    for j, dataset in enumerate(datasets or [None]):
        ax = axes[0, j]
        here = frame[frame["dataset"] == dataset] if len(frame) else frame
        if here.empty:
            _no_data(ax, f"{dataset or ''}\nno adapted environments")
            continue
        methods = _order(runs.loc[runs["dataset"] == dataset, "method"])
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


DRAW = {name: globals()[name] for name in FIGURES}


def make_figures(runs_csv, out_dir, strict: bool = False) -> list[Path]:
    """Write every figure of ``FIGURES`` as ``out_dir/{name}.png``.

    With ``strict=False`` (the workflow) a figure that fails to draw is written as a panel
    that names the error (the traceback goes to stderr); ``strict=True`` raises instead.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = pd.read_csv(runs_csv)
    written = []
    sns.set_theme(style="whitegrid", context="paper")
    for name in FIGURES:
        try:
            fig = DRAW[name](runs)
        except Exception as err:
            if strict:
                raise
            traceback.print_exc(file=sys.stderr)
            fig, axes = _grid(1, 1)
            _no_data(axes[0, 0], f"{name}: could not draw\n{type(err).__name__}: {err}")
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp, dpi=DPI)
        plt.close(fig)
        tmp.replace(path)
        written.append(path)
    _load_model.cache_clear()
    return written
