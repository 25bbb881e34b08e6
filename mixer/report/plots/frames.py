"""What the figures read: runs.csv, and each cell's metrics.json named by its ``run_dir``.

From a cell's metrics.json (written by ``mixer evaluate``) the figures use ``per_env``
(per-environment errors; ``per_env.id.family``, the family index of each training
environment), ``contexts`` ([E][d_ξ] final training contexts, rows of length 0 for a learner
without contexts), ``gate_probs`` ([E][K] softmax of the gate logits, or null without a gate)
and ``routing_trace`` ([outer steps][E] expert of every environment, or null). A missing or
unreadable value leaves its panel empty; runs.csv itself must be readable.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from mixer.errors import ConfigError

# Columns of runs.csv the figures need (``mixer aggregate`` writes them first).
RUNS_COLUMNS = ("dataset", "regime", "method", "seed", "status", "run_dir")


def read_runs(path) -> pd.DataFrame:
    """runs.csv as a frame; ConfigError naming the file when it is unreadable or incomplete."""
    fix = "Fix: write it with `mixer aggregate --out-dir FOLDER METRICS...`."
    try:
        runs = pd.read_csv(path)
    except (OSError, ValueError) as err:  # missing, empty, not CSV, not text
        why = " ".join(str(err).split())  # one line: parser messages end with a newline
        raise ConfigError(
            f"{path}: cannot read runs.csv ({type(err).__name__}: {why}). {fix}"
        ) from None
    missing = [c for c in RUNS_COLUMNS if c not in runs.columns]
    if missing:
        raise ConfigError(f"{path}: runs.csv has no column {', '.join(missing)}. {fix}")
    return runs


def clear_caches() -> None:
    """Forget the cells' files read so far (they may have been rewritten since)."""
    _read_metrics.cache_clear()
    _family_names.cache_clear()


def ok_rows(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def in_order(values) -> list:
    """The distinct values, in order of first appearance."""
    return list(dict.fromkeys(values))


def int_or(value, default: int) -> int:
    try:
        return int(value) if pd.notna(value) else default
    except (TypeError, ValueError):
        return default


def main_regime(runs: pd.DataFrame, dataset: str) -> str | None:
    """The regime a per-cell figure shows: 'default' if the dataset has it, else the first."""
    regimes = in_order(runs.loc[runs["dataset"] == dataset, "regime"])
    if not regimes:
        return None
    return "default" if "default" in regimes else regimes[0]


def first_ok_cells(runs: pd.DataFrame):
    """(dataset, regime, method, row) of the lowest-seed ok cell of each method (main regime)."""
    for dataset in in_order(runs["dataset"]):
        regime = main_regime(runs, dataset)
        here = runs[(runs["dataset"] == dataset) & (runs["regime"] == regime)]
        for method in in_order(here["method"]):
            ok = ok_rows(here[here["method"] == method]).sort_values("seed")
            yield dataset, regime, method, (ok.iloc[0] if len(ok) else None)


@cache
def _read_metrics(run_dir: str) -> dict:
    try:
        data = json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cell_metrics(row) -> dict:
    """The cell's metrics.json ({} when it cannot be read)."""
    return _read_metrics(str(row["run_dir"]))


def _array(value, dtype=float) -> np.ndarray | None:
    if value is None:
        return None
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        return None


def cell_contexts(row) -> np.ndarray | None:
    """[E, d_ξ] final training contexts of the cell, None for a learner without contexts."""
    ctx = _array(cell_metrics(row).get("contexts"))
    return ctx if ctx is not None and ctx.ndim == 2 and ctx.shape[1] > 0 else None


def routing_trace(row) -> np.ndarray | None:
    """[outer steps, E] expert of every training environment after each outer step."""
    trace = _array(cell_metrics(row).get("routing_trace"), int)
    return trace if trace is not None and trace.ndim == 2 and trace.size else None


def family_labels(row, n_envs: int) -> np.ndarray | None:
    """[E] family index of every training environment (``per_env.id.family``)."""
    per_env = cell_metrics(row).get("per_env") or {}
    family = _array((per_env.get("id") or {}).get("family"), int)
    return family if family is not None and family.shape == (n_envs,) else None


def gate_matrix(row) -> tuple[np.ndarray, str] | None:
    """[E, K] gate probabilities of the cell, else its final routing as one-hot rows."""
    probs = _array(cell_metrics(row).get("gate_probs"))
    if probs is not None and probs.ndim == 2 and probs.shape[1] > 1:
        return probs, "gate probability"
    trace = routing_trace(row)
    if trace is not None:
        last = trace[-1]
        n_experts = int_or(row.get("n_experts"), last.max() + 1)
        return np.eye(max(n_experts, last.max() + 1))[last], "routed expert (one-hot)"
    return None


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


def family_names(row, family) -> list[str]:
    """Names of the family indices ``family`` in the cell's dataset (``provenance.dataset``)."""
    where = row.get("provenance.dataset") if row is not None else None
    names = _family_names(where if isinstance(where, str) else None)
    return [names.get(int(f), f"family {int(f)}") for f in family]


def routing_trace_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per outer step of every ok routed cell: routing ARI vs family, share rerouted."""
    from sklearn.metrics import adjusted_rand_score

    rows = []
    for _, row in ok_rows(runs).iterrows():
        if row["regime"] != main_regime(runs, row["dataset"]):
            continue
        trace = routing_trace(row)
        family = None if trace is None else family_labels(row, trace.shape[1])
        if family is None:
            continue
        if len(np.unique(trace)) < 2 and int_or(row.get("n_experts"), 1) < 2:
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


def per_env_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Adaptation error of every adaptation environment of every ok cell (main regime)."""
    rows = []
    for _, row in ok_rows(runs).iterrows():
        if row["regime"] != main_regime(runs, row["dataset"]):
            continue
        try:
            ood = cell_metrics(row)["per_env"]["ood"]
            inside = ood.get("in_training_range") or [None] * len(ood["rel_mse"])
            found = list(zip(ood["env_id"], ood["rel_mse"], inside, strict=True))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        for env, error, flag in found:
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
