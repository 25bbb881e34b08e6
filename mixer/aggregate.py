"""Tables of a benchmark: one row per expected cell, then mean ± std over seeds.

A cell is identified by its path ``.../{dataset}/{regime}/{method}/seed{seed}/metrics.json``.
The aggregator is given every *expected* metrics file (the workflow passes all of them) and
reads whichever exist, so a partial run gives a partial table in which nothing is dropped:

- ``ok`` / ``diverged``: the status written in metrics.json (a diverged run is a result);
- ``failed``: no metrics.json, and the cell's train or evaluate log ends with an error;
- ``stale``: a metrics.json that is not (or no longer) the result of its folder's cell: it
  lacks the fingerprint, carries another cell's, or its model.pt is gone or changed;
- ``missing``: no metrics.json and no error logged (not run yet, or its folder was deleted).

Outputs (each written atomically): ``runs.csv`` (tidy, every scalar metric and the provenance
flattened into dotted columns), ``summary.csv`` (mean, std, n of every numeric metric per
dataset × regime × method), ``summary.md`` and ``summary.tex`` (the key metrics, best in bold).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mixer.errors import MixerError
from mixer.fileio import atomic_write_text
from mixer.identity import CELL, differences, file_sha256

CELL_PATH = re.compile(
    r"(?P<dataset>[^/]+)/(?P<regime>[^/]+)/(?P<method>[^/]+)/seed(?P<seed>\d+)/metrics\.json$"
)
IDENTITY = ["dataset", "regime", "method", "seed"]
GROUP = ["dataset", "regime", "method"]
STATUSES = ["ok", "diverged", "failed", "stale", "missing"]
TABLES = {
    "runs": "runs.csv",
    "summary": "summary.csv",
    "markdown": "summary.md",
    "latex": "summary.tex",
}
# Shown in summary.md/.tex when present, in this order; other numeric metrics are in summary.csv.
KEY_METRICS = [
    "rel_mse_id",
    "rel_mse_ood",
    "mse_id",
    "mse_ood",
    "routing_purity",
    "routing_ari",
    "context_kmeans_ari",
    "seconds_per_outer_step",
]
# Metrics that join the key ones whenever a run reports them (EEG / time-series scores).
EXTRA_KEY = re.compile(r"accuracy|^routing_ari_")
HIGHER_IS_BETTER = {"purity", "ari", "nmi", "accuracy"}
# Columns of runs.csv that describe the cell rather than measure it (never averaged).
NOT_METRICS = {"seed", "status", "reason", "run_dir"}
# Per-environment arrays of metrics.json (read by the figures), left out of runs.csv even when
# null: a learner without a gate writes ``gate_probs: null``, which is not a measurement.
CELL_ARRAYS = ("per_env", "contexts", "gate_probs", "routing_trace", "routing_ood")


def higher_is_better(metric: str) -> bool:
    """Purity, ARI, NMI and accuracies are better high; errors, time and memory low."""
    return bool(HIGHER_IS_BETTER & set(metric.split("_")))


def cell_identity(path) -> dict:
    found = CELL_PATH.search(Path(path).as_posix())
    if found is None:
        raise ValueError(
            f"{path} is not a cell's metrics file "
            "(expected .../{dataset}/{regime}/{method}/seed{seed}/metrics.json)"
        )
    cell = found.groupdict()
    cell["seed"] = int(cell["seed"])
    return cell


def _flatten(data: dict, prefix: str = "", keep_lists: bool = False) -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}.", keep_lists or key == "provenance"))
        elif isinstance(value, list):
            if keep_lists:  # provenance (e.g. the systems of a dataset): kept as JSON text
                out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def _logged_error(cell: dict, logs_dir: Path) -> str | None:
    """The last line of the cell's train/evaluate log when that log reports an error."""
    rel = Path(cell["dataset"], cell["regime"], cell["method"], f"seed{cell['seed']}.log")
    for stage in ("evaluate", "train"):
        log = logs_dir / stage / rel
        if not log.is_file():
            continue
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        if any("error" in line.lower() or line.startswith("Traceback") for line in lines):
            return f"{stage}: {lines[-1][:300]}"
    return None


def _read_metrics(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MixerError(
            f"{path} is not a readable metrics file ({err}). Fix: delete it and run the cell "
            f"again (snakemake --cores 1 {path})."
        ) from None
    if not isinstance(data, dict):
        raise MixerError(f"{path} does not hold a JSON object. Fix: delete it and rerun the cell.")
    return data


def stale_reason(path: Path, data: dict, cell: dict) -> str | None:
    """Why a cell's metrics cannot be trusted as a result of its folder's cell (None: they can).

    The metrics must carry the fingerprint of the cell they are filed under, and the model they
    scored must still be there, unchanged: otherwise they describe some other model.
    """
    found = data.get("fingerprint")
    if not isinstance(found, dict):
        return (
            "metrics.json carries no fingerprint (an older format). Fix: snakemake --cores 1 "
            f"--force {path}"
        )
    wrong = differences(cell, found, CELL)
    if wrong:
        return f"metrics.json is of another cell: {'; '.join(wrong)}"
    model = path.parent / "model.pt"
    if not model.is_file():
        return (
            "its model.pt is gone: these metrics are of an earlier model. Fix: snakemake "
            f"--cores 1 --force {path}"
        )
    if data.get("model_sha256") != file_sha256(model):
        return f"model.pt changed after it was evaluated. Fix: snakemake --cores 1 --force {path}"
    return None


def read_cell(path, logs_dir="logs") -> dict:
    """One row of runs.csv: identity, status, reason, scalar metrics, flattened provenance."""
    path = Path(path)
    cell = cell_identity(path)
    row = {**cell, "status": "missing", "reason": "", "run_dir": path.parent.as_posix()}
    if path.is_file():
        data = _read_metrics(path)
        per_env = data.get("per_env") or {}
        flat = _flatten({k: v for k, v in data.items() if k not in CELL_ARRAYS})
        for name in IDENTITY:  # the path is the identity; the file's copy must agree
            flat.pop(name, None)
        row.update(flat)
        row["status"], row["reason"] = data.get("status", "ok"), data.get("reason") or ""
        for split, column in (("id", "n_train_envs"), ("ood", "n_adapt_envs")):
            if "env_id" in per_env.get(split, {}):
                row[column] = len(per_env[split]["env_id"])
        stale = stale_reason(path, data, cell)
        if stale is not None:
            row["status"], row["reason"] = "stale", stale
    else:
        error = _logged_error(cell, Path(logs_dir))
        if error is not None:
            row["status"], row["reason"] = "failed", error
    return row


def collect(metrics_paths, logs_dir="logs") -> pd.DataFrame:
    """runs.csv as a frame: one row per expected cell, in the order given, duplicates dropped."""
    seen, rows = set(), []
    for path in metrics_paths:
        key = Path(path).as_posix()
        if key not in seen:
            seen.add(key)
            rows.append(read_cell(path, logs_dir))
    runs = pd.DataFrame(rows)
    if runs.empty:
        runs = pd.DataFrame(columns=[*IDENTITY, "status", "reason", "run_dir"])
    provenance = [c for c in runs.columns if c.startswith("provenance.")]
    first = [*IDENTITY, "status", "reason", "run_dir"]
    middle = [c for c in runs.columns if c not in first and c not in provenance]
    return runs[first + middle + provenance]


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """Numeric measurement columns of runs.csv (not identity, status or provenance)."""
    found = []
    for column in runs.columns:
        if column in NOT_METRICS or column.startswith("provenance.") or column in IDENTITY:
            continue
        values = pd.to_numeric(runs[column], errors="coerce")
        if runs[column].dtype == bool or values.notna().sum() == 0:
            continue
        if values.notna().sum() == runs[column].notna().sum():  # numeric wherever present
            found.append(column)
    return found


def key_metrics(runs: pd.DataFrame) -> list[str]:
    present = metric_columns(runs)
    extra = [c for c in present if EXTRA_KEY.search(c) and c not in KEY_METRICS]
    return [m for m in KEY_METRICS if m in present] + extra


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset × regime × method: status counts, then mean/std/n of every metric.

    Only cells with status ``ok`` enter the means; ``std`` is the sample standard deviation
    (ddof = 1, NaN with fewer than two values); ``n`` is how many seeds a metric averages.
    """
    metrics = metric_columns(runs)
    rows = []
    for key, group in runs.groupby(GROUP, sort=False):
        row = dict(zip(GROUP, key, strict=True))
        row["cells"] = len(group)
        for status in STATUSES:
            row[status] = int((group["status"] == status).sum())
        ok = group[group["status"] == "ok"]
        for metric in metrics:
            values = pd.to_numeric(ok[metric], errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            row[f"{metric}_n"] = len(values)
        rows.append(row)
    columns = [*GROUP, "cells", *STATUSES]
    return pd.DataFrame(rows, columns=None if rows else columns)


def best_rows(summary: pd.DataFrame, metric: str) -> set[int]:
    """Index of the best row(s) per dataset × regime; none where fewer than two compete."""
    best = set()
    for _, group in summary.groupby(["dataset", "regime"], sort=False):
        values = group[f"{metric}_mean"].dropna()
        if len(values) < 2:
            continue
        target = values.max() if higher_is_better(metric) else values.min()
        best.update(values.index[values == target])
    return best


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _cell_text(row, metric: str) -> tuple[str, str]:
    """(value text, footnote) of one summary cell: 'mean ± std', '—' when nothing to average."""
    n = int(row[f"{metric}_n"])
    if n == 0:
        return "—", ""
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    text = _number(mean)
    if n > 1:
        std = 0.0 if std <= 1e-9 * abs(mean) else std  # equal seeds, up to rounding
        text += f" ± {_number(std, 2)}"
    return text, (f"n={n}" if n < row["cells"] else "")


def _notes(row) -> str:
    parts = [f"{row[s]} {s}" for s in STATUSES[1:] if row.get(s, 0)]
    return ", ".join(parts)


def table_rows(summary: pd.DataFrame, metrics: list[str]):
    """Rows of the display tables: (row, {metric: (text, footnote, bold)})."""
    best = {m: best_rows(summary, m) for m in metrics}
    for index, row in summary.iterrows():
        cells = {}
        for metric in metrics:
            text, note = _cell_text(row, metric)
            cells[metric] = (text, note, index in best[metric])
        yield row, cells


def to_markdown(summary: pd.DataFrame, metrics: list[str]) -> str:
    lines = [
        "# Summary",
        "",
        "Mean ± sample std (ddof 1) over the seeds whose cell has status `ok`. **Bold**: best",
        "method per dataset and regime (lower is better for errors and time, higher for",
        "purity, ARI, NMI and accuracy). `(n=k)`: the value averages k of the cell's seeds;",
        "`—`: no value. `ok/total` counts the expected cells; diverged, failed (an error was",
        "logged), stale (metrics not of the cell's current model) and missing (not run) cells",
        "are listed in `notes`.",
    ]
    header = ["regime", "method", "ok/total", *metrics, "notes"]
    current = None
    for row, cells in table_rows(summary, metrics):
        if row["dataset"] != current:
            current = row["dataset"]
            lines += ["", f"## {current}", ""]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(["---"] * 3 + ["---:"] * len(metrics) + ["---"]) + "|")
        values = [row["regime"], row["method"], f"{row['ok']}/{row['cells']}"]
        for metric in metrics:
            text, note, bold = cells[metric]
            text = f"**{text}**" if bold else text
            values.append(f"{text} ({note})" if note else text)
        values.append(_notes(row))
        lines.append("| " + " | ".join(values) + " |")
    if summary.empty:
        lines += ["", "No cells."]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for char in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, f"\\{char}" if char != "\\" else r"\textbackslash{}")
    return text


def to_latex(summary: pd.DataFrame, metrics: list[str]) -> str:
    header = ["dataset", "regime", "method", "ok/total", *metrics, "notes"]
    lines = [
        "% mean ± sample std over the seeds with status ok; bold: best per dataset and regime;",
        "% (n=k): averaged over k seeds; written by `mixer aggregate` (needs booktabs).",
        r"\begin{tabular}{llll" + "r" * len(metrics) + "l}",
        r"\toprule",
        " & ".join(_tex(h) for h in header) + r" \\",
        r"\midrule",
    ]
    current = None
    for row, cells in table_rows(summary, metrics):
        if current is not None and row["dataset"] != current:
            lines.append(r"\midrule")
        current = row["dataset"]
        values = [_tex(str(row[c])) for c in GROUP] + [f"{row['ok']}/{row['cells']}"]
        for metric in metrics:
            text, note, bold = cells[metric]
            text = text.replace(" ± ", r" $\pm$ ").replace("—", "--")
            text = rf"\textbf{{{text}}}" if bold else text
            values.append(f"{text} ({note})" if note else text)
        values.append(_tex(_notes(row)))
        lines.append(" & ".join(values) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_tables(metrics_paths, out_dir, logs_dir="logs") -> dict[str, Path]:
    """Read the expected cells and write the four tables into ``out_dir``."""
    out_dir = Path(out_dir)
    runs = collect(metrics_paths, logs_dir)
    summary = summarize(runs)
    shown = key_metrics(runs)
    paths = {name: out_dir / file for name, file in TABLES.items()}
    atomic_write_text(paths["runs"], runs.to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    atomic_write_text(paths["markdown"], to_markdown(summary, shown))
    atomic_write_text(paths["latex"], to_latex(summary, shown))
    return paths
