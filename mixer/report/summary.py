"""Summary tables of runs.csv: per dataset × regime × method, status counts, the centre and a
95% confidence interval of every metric over the ok seeds, a paired comparison of every method
with a reference method, and the markdown / LaTeX renderings (best in bold only where the
intervals separate). :mod:`mixer.report.aggregate` reads the cells and writes the files.

Errors span decades (one seed at 1e-4, another at 1e-2), so they are aggregated on log10: the
geometric mean with the Student-t interval of the mean of log10, back-transformed (a bound is
never ≤ 0), and compared with the reference as ratios. Scores in [0, 1] (purity, ARI,
accuracy), times and counts stay linear: arithmetic mean and t-interval.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from mixer.report.statistics import (
    centre_and_interval,
    higher_is_better,
    log10_positive,
    on_log_scale,
    paired_difference,
)

GROUP = ["dataset", "regime", "method"]
IDENTITY = [*GROUP, "seed"]
STATUSES = ["ok", "diverged", "failed", "stale", "missing"]
# Shown in summary.md/.tex when present, in this order (few, so that a dataset's table fits on
# one screen); every other numeric metric (medians, absolute MSE, ...) is in summary.csv.
KEY_METRICS = [
    "rel_mse_id",
    "rel_mse_ood",
    "routing_purity",
    "context_kmeans_ari",
    "seconds_per_outer_step",
]
# Metrics that join the key ones whenever a run reports them (EEG / time-series scores).
EXTRA_KEY = re.compile(r"accuracy|^routing_ari_")
# A seed whose error is at least this many times its cell's median (on log10) is named in notes.
BLOWN_UP = 100.0
# The errors checked for blown-up seeds, in the order a seed's note names the first one.
BLOWN_UP_METRICS = ["rel_mse_id", "rel_mse_ood", "mse_id", "mse_ood"]
# Columns of runs.csv that describe the cell rather than measure it (never averaged).
NOT_METRICS = {"seed", "status", "reason", "run_dir"}
# Default method every other one is compared with, seed by seed (config key reference_method).
REFERENCE = "single"
# Below this many seed pairs a paired p-value is computed (summary.csv) but not claimed.
MIN_PAIRS = 5


def centre(metric: str) -> str:
    """The summary.csv column of a metric's centre: ``_gmean`` for errors, else ``_mean``."""
    return f"{metric}_gmean" if on_log_scale(metric) else f"{metric}_mean"


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


def blown_up_seeds(cells: pd.DataFrame) -> list[str]:
    """'seed s metric value' of every seed whose error is ≥ BLOWN_UP × its cell's median.

    The median is taken on log10 (for two seeds: their geometric mean), so that one seed at
    1e6 beside one at 1e-2 is caught, which an arithmetic median of two values cannot do. A
    seed is named once, for the first error of ``BLOWN_UP_METRICS`` that flags it.
    """
    named, notes = set(), []
    for metric in BLOWN_UP_METRICS:
        if metric not in cells.columns:
            continue
        values = _finite(cells, metric)
        if len(values) < 2:
            continue
        logs = pd.Series(log10_positive(values.to_numpy()), index=values.index)
        flagged = logs[logs - logs.median() >= math.log10(BLOWN_UP)]
        for seed in flagged.index:
            if seed not in named:
                named.add(seed)
                notes.append(f"seed {seed} {metric} {values[seed]:.2g}")
    return notes


def _finite(cells: pd.DataFrame, metric: str) -> pd.Series:
    """The metric's finite values in ``cells``, indexed by seed."""
    values = pd.to_numeric(cells[metric], errors="coerce")
    values.index = cells["seed"].to_numpy()
    return values[np.isfinite(values.to_numpy(dtype=float))].astype(float)


def _versus_reference(ok: pd.DataFrame, reference_ok: pd.DataFrame | None, metric: str) -> dict:
    """``{metric}_vs_ref_{diff,p,n}``: the cells of one method paired by seed with the
    reference's, both ok (null when there is no reference to compare with). For errors the
    difference and the test are on log10 (``diff`` is log10 of the ratio method/reference)."""
    names = [f"{metric}_vs_ref_{part}" for part in ("diff", "p", "n")]
    if reference_ok is None:
        return dict.fromkeys(names, math.nan)
    pairs = pd.concat(
        [_finite(ok, metric), _finite(reference_ok, metric)], axis=1, join="inner"
    ).dropna()
    ours, theirs = pairs.iloc[:, 0].to_numpy(float), pairs.iloc[:, 1].to_numpy(float)
    if on_log_scale(metric):
        ours, theirs = log10_positive(ours), log10_positive(theirs)
    diff, p = paired_difference(ours, theirs)
    return dict(zip(names, (diff, p, len(pairs)), strict=True))


def summarize(runs: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Per dataset × regime × method: status counts, then statistics of every metric.

    Only cells with status ``ok`` enter them. Errors (``on_log_scale``): ``gmean``, the
    geometric mean; ``log10_std``, the sample std of log10 (ddof = 1); others: ``mean`` and
    ``std``. Every metric: ``n``, how many seeds it averages; ``ci_low``/``ci_high``, the 95%
    Student-t interval of the mean (of log10 for errors, back-transformed; NaN when n < 2).
    For the key metrics, the method against ``reference`` of the same dataset and regime,
    paired by seed over the seeds where both cells are ok: ``vs_ref_diff`` (mean of method −
    reference; of log10 method − log10 reference for errors), ``vs_ref_p`` (paired t-test,
    ``scipy.stats.ttest_rel``, on the same scale) and ``vs_ref_n`` (pairs); null for the
    reference itself and where it has no cell. The ``reference`` column names the method
    compared with (empty where none); ``blown_up`` names the seeds of ``blown_up_seeds``.
    """
    metrics = metric_columns(runs)
    compared = set(key_metrics(runs))
    rows = []
    for key, group in runs.groupby(GROUP, sort=False):
        row = dict(zip(GROUP, key, strict=True))
        row["cells"] = len(group)
        for status in STATUSES:
            row[status] = int((group["status"] == status).sum())
        ok = group[group["status"] == "ok"]
        reference_ok = _reference_cells(runs, row, reference)
        row["reference"] = reference if reference_ok is not None else ""
        row["blown_up"] = "; ".join(blown_up_seeds(ok))
        for metric in metrics:
            values = _finite(ok, metric).to_numpy()
            spread = f"{metric}_log10_std" if on_log_scale(metric) else f"{metric}_std"
            row[centre(metric)], row[spread], low, high = centre_and_interval(metric, values)
            row[f"{metric}_n"] = len(values)
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = low, high
            if metric in compared:
                row.update(_versus_reference(ok, reference_ok, metric))
        rows.append(row)
    columns = [*GROUP, "cells", *STATUSES]
    summary = pd.DataFrame(rows, columns=None if rows else columns)
    for column in summary.columns:
        if column.endswith("_vs_ref_n"):  # counts, null where nothing was compared
            summary[column] = summary[column].astype("Int64")
    return summary


def _reference_cells(runs: pd.DataFrame, row: dict, reference: str) -> pd.DataFrame | None:
    """The ok cells of the reference method in the row's dataset and regime; None for the
    reference's own row and where the reference has no expected cell there."""
    if row["method"] == reference:
        return None
    here = runs[
        (runs["dataset"] == row["dataset"])
        & (runs["regime"] == row["regime"])
        & (runs["method"] == reference)
    ]
    return here[here["status"] == "ok"] if len(here) else None


def best_rows(summary: pd.DataFrame, metric: str) -> set[int]:
    """Index of the row per dataset × regime that is best with its interval separated.

    The row with the best mean is returned only if its 95% interval overlaps none of the
    other methods' intervals (the runner-up's and every other's, each over at least two
    seeds): a best that the seeds cannot tell apart is not claimed. None where fewer than two
    methods have a value.
    """
    best = set()
    mean, low, high = centre(metric), f"{metric}_ci_low", f"{metric}_ci_high"
    for _, group in summary.groupby(["dataset", "regime"], sort=False):
        competing = group[group[f"{metric}_n"] >= 1]
        if len(competing) < 2 or (competing[f"{metric}_n"] < 2).any():
            continue
        ranked = competing.sort_values(mean, ascending=not higher_is_better(metric))
        top, others = ranked.iloc[0], ranked.iloc[1:]
        if higher_is_better(metric):
            separated = (top[low] > others[high]).all()
        else:
            separated = (top[high] < others[low]).all()
        if separated:
            best.add(ranked.index[0])
    return best


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _cell_text(row, metric: str) -> tuple[str, str]:
    """(value text, footnote) of one summary cell: 'centre [ci_low, ci_high]' (the centre
    alone for one seed), '—' when nothing to average."""
    n = int(row[f"{metric}_n"])
    if n == 0:
        return "—", ""
    mean, low, high = row[centre(metric)], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    text = _number(mean)
    if n > 1:
        if high - low <= 1e-9 * abs(mean):  # equal seeds, up to rounding
            low = high = mean
        text += f" [{_number(low, 2)}, {_number(high, 2)}]"
    return text, (f"n={n}" if n < row["cells"] else "")


def _paired_text(row, metric: str) -> str:
    """'diff (p=…, n=k)' of one method against the reference ('×ratio' for errors); 'n < 5'
    instead of a p-value with fewer pairs, '—' without pairs."""
    n = row[f"{metric}_vs_ref_n"]
    if pd.isna(n) or n == 0:
        return "—"
    diff = row[f"{metric}_vs_ref_diff"]
    text = f"×{10.0**diff:.3g}" if on_log_scale(metric) else f"{diff:+.3g}"
    if n < MIN_PAIRS:
        return f"{text} (n < {MIN_PAIRS}: {n} pairs)"
    p = row[f"{metric}_vs_ref_p"]
    p_text = "p undefined" if pd.isna(p) else "p<0.001" if p < 0.001 else f"p={p:.2g}"
    return f"{text} ({p_text}, n={n})"


def _notes(row) -> str:
    parts = [f"{row[s]} {s}" for s in STATUSES[1:] if row.get(s, 0)]
    blown = row.get("blown_up")
    if isinstance(blown, str) and blown:
        parts.append(f"blown-up: {blown}")
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


def _markdown_header(reference: str) -> list[str]:
    return [
        "# Summary",
        "",
        "Centre and 95% confidence interval `[low, high]` over the seeds whose cell has status",
        "`ok`. Errors (`*mse*`, `*loss*`) are on the log scale they live on: the geometric mean",
        "and the Student-t interval of the mean of log10, back-transformed (m ± t(0.975, n−1)·s/√n",
        "on log10 values; never a bound ≤ 0). Purity, ARI, accuracy and times: the arithmetic",
        "mean and the same interval on the values. One seed: the value alone. A seed whose error",
        f"is ≥ {BLOWN_UP:g}× its cell's median (on log10) is named in `notes` as `blown-up`, and",
        "kept. **Bold**: the best method of a dataset and regime, only where its interval",
        "overlaps no other method's interval (each over at least two seeds); otherwise no value",
        "is bold. Lower is better for errors and time, higher for purity, ARI, NMI and accuracy.",
        "`(n=k)`: the value averages k of the cell's seeds; `—`: no value. `ok/total` counts the",
        "expected cells; diverged, failed (an error was logged), stale (metrics not of the cell's",
        "current model) and missing (not run) cells are listed in `notes`. summary.csv also has",
        "the std of every metric.",
        "",
        f"Paired comparison against `{reference}`: per dataset and regime, each method against",
        f"`{reference}` over the seeds where both cells are `ok`: for errors the ratio",
        f"`×r` = 10^mean(log10 method − log10 {reference}) (below 1: lower error), otherwise the",
        f"mean difference (method − {reference}); with the paired t-test p-value (on log10 for",
        f"errors) and the number of pairs; `n < {MIN_PAIRS}`: too few pairs to claim a p-value",
        f"(summary.csv has it). No comparison where `{reference}` has no cell. Columns without",
        "any value in a dataset are left out of its table.",
    ]


def _paired_table(group: pd.DataFrame, metrics: list[str], reference: str) -> list[str]:
    """Markdown lines of one dataset's comparison against the reference (none if nothing)."""
    rows = group[group["reference"] == reference]
    if rows.empty:
        return []
    lines = [
        "",
        f"### Paired comparison against {reference}",
        "",
        "| " + " | ".join(["regime", "method", *metrics]) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * len(metrics)) + "|",
    ]
    for _, row in rows.iterrows():
        values = [row["regime"], row["method"], *(_paired_text(row, m) for m in metrics)]
        lines.append("| " + " | ".join(values) + " |")
    return lines


def _metrics_with_values(group: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The metrics some row of a dataset has a value of (one screen: no all-'—' columns)."""
    return [m for m in metrics if (group[f"{m}_n"] > 0).any()]


def to_markdown(summary: pd.DataFrame, metrics: list[str], reference: str = REFERENCE) -> str:
    lines = _markdown_header(reference)
    current, shown = None, metrics
    for row, cells in table_rows(summary, metrics):
        if row["dataset"] != current:
            if current is not None:
                lines += _paired_table(summary[summary["dataset"] == current], shown, reference)
            current = row["dataset"]
            shown = _metrics_with_values(summary[summary["dataset"] == current], metrics)
            header = ["regime", "method", "ok/total", *shown, "notes"]
            lines += ["", f"## {current}", ""]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(["---"] * 3 + ["---:"] * len(shown) + ["---"]) + "|")
        values = [row["regime"], row["method"], f"{row['ok']}/{row['cells']}"]
        for metric in shown:
            text, note, bold = cells[metric]
            text = f"**{text}**" if bold else text
            values.append(f"{text} ({note})" if note else text)
        values.append(_notes(row))
        lines.append("| " + " | ".join(values) + " |")
    if current is not None:
        lines += _paired_table(summary[summary["dataset"] == current], shown, reference)
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
        "% centre [95% Student-t confidence interval] over the seeds with status ok (errors:",
        "% geometric mean, interval of the mean of log10 back-transformed); bold: best",
        "% per dataset and regime, only where its interval overlaps no other method's;",
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
            text = text.replace("—", "--")
            text = rf"\textbf{{{text}}}" if bold else text
            values.append(f"{text} ({note})" if note else text)
        values.append(_tex(_notes(row)))
        lines.append(" & ".join(values) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
