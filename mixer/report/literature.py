"""The suite's baselines next to what their authors logged: literature.csv and literature.md.

An *anchor* is one figure from a baseline's own runs (config key ``literature``, by default
``config/literature.csv``): a dataset (or several, ``a|b``: a row for each), a learner of the
registry, a metric of metrics.json
(``mse_id``, ``mse_ood``) and the logged value, a range ``low``..``high`` or one value
(``low == high``), with its ``source`` and the authors' ``setting``.

For every anchor and every method of ``runs.csv`` whose learner is the anchor's, on the
anchor's dataset, the table gives our mean and sample std over the ``ok`` seeds, their ratio
to the logged value and a verdict. Only the ``default`` regime is compared: the other regimes
change the data (fewer trajectories or environments), which is not the authors' protocol.

Optional anchor columns: ``anchor`` (a unique id) and ``selection`` (which checkpoint the
figure is, e.g. the lowest test loss over training). An anchor with an id may have a learning
curve in the curves file (:mod:`mixer.report.literature_curves`); a second table then sets
our cells against that curve at our own step count.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mixer.errors import ConfigError, MixerError
from mixer.records.atomic import atomic_write_text
from mixer.report.literature_curves import (
    CURVE_COLUMNS,
    SAME_STEP_COLUMNS,
    anchor_datasets,
    curves_path,
    read_curves,
    same_step_lines,
    same_steps,
)

ANCHOR_COLUMNS = ("dataset", "learner", "metric", "low", "high", "source", "setting")
OPTIONAL_ANCHOR_COLUMNS = ("anchor", "selection")
METRICS = ("mse_id", "mse_ood")
RUNS_COLUMNS = ("dataset", "regime", "method", "seed", "status")  # runs.csv always has these
REGIME = "default"
TABLES = {"csv": "literature.csv", "markdown": "literature.md"}
# Verdicts by our mean over the logged high end: a range counts as met anywhere inside it.
VERDICTS = ((1.0, "at or below"), (2.0, "within 2x"), (3.0, "within 3x"))
ABOVE = "above 3x"
NOT_RUN = "not run"
NO_OK = "no ok seed"
COLUMNS = [
    "dataset",
    "learner",
    "metric",
    "method",
    "logged_low",
    "logged_high",
    "ours_mean",
    "ours_std",
    "n_ok",
    "n_cells",
    "ratio",
    "verdict",
    "source",
    "setting",
    "anchor",
    "selection",
    *SAME_STEP_COLUMNS,
]
ANCHORS_FIX = (
    "Fix: give a CSV with the header "
    f"'{','.join(ANCHOR_COLUMNS)}' and one row per logged figure "
    "(see config/literature.csv and the config key `literature` in config/README.md)."
)


def read_anchors(path) -> pd.DataFrame:
    """The anchors file, checked: every column, known metrics, 0 < low <= high.

    Raises a ConfigError naming the file (and the row, counted as in the file) otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"anchors file {path} not found. {ANCHORS_FIX}")
    try:
        anchors = pd.read_csv(path, dtype={"dataset": str, "learner": str, "metric": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"anchors file {path} is not a readable CSV ({err}). {ANCHORS_FIX}"
        ) from None
    missing = [c for c in ANCHOR_COLUMNS if c not in anchors.columns]
    if missing:
        raise ConfigError(f"anchors file {path} lacks the columns {missing}. {ANCHORS_FIX}")
    for index, anchor in anchors.iterrows():
        where = f"anchors file {path}, line {index + 2}"  # the header is line 1
        if anchor["metric"] not in METRICS:
            known = list(METRICS)
            raise ConfigError(
                f"{where}: metric {anchor['metric']!r} is not one of {known}. {ANCHORS_FIX}"
            )
        if pd.isna(anchor["dataset"]) or pd.isna(anchor["learner"]):
            raise ConfigError(f"{where}: dataset and learner are required. {ANCHORS_FIX}")
        low, high = (pd.to_numeric(anchor[k], errors="coerce") for k in ("low", "high"))
        # The ratio divides by sqrt(low * high): both must be positive numbers.
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
            raise ConfigError(
                f"{where}: low {anchor['low']!r} and high {anchor['high']!r} must be numbers "
                f"with 0 < low <= high (low == high for a single value). {ANCHORS_FIX}"
            )
    anchors[["low", "high"]] = anchors[["low", "high"]].astype(float)
    for column in OPTIONAL_ANCHOR_COLUMNS:
        if column not in anchors:
            anchors[column] = ""
    # An empty source, setting, id or selection (not stated for that anchor) is text, not NaN.
    text = ["source", "setting", *OPTIONAL_ANCHOR_COLUMNS]
    anchors[text] = anchors[text].fillna("").astype(str)
    ids = anchors.loc[anchors["anchor"] != "", "anchor"]
    if ids.duplicated().any():
        twice = sorted(set(ids[ids.duplicated()]))
        raise ConfigError(
            f"anchors file {path}: the anchor ids {twice} are not unique. {ANCHORS_FIX}"
        )
    return anchors


def read_runs(path) -> pd.DataFrame:
    """runs.csv of `mixer aggregate` (names kept as text: a method may be called ``1e3``)."""
    path = Path(path)
    if not path.is_file():
        raise MixerError(f"{path} not found. Fix: run `mixer aggregate` first (it writes it).")
    names = {c: str for c in ("dataset", "regime", "method", "status", "learner")}
    fix = "Fix: write it again (snakemake --cores 1 --forcerun aggregate)."
    try:
        runs = pd.read_csv(path, dtype=names)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MixerError(f"{path} is not a readable runs table ({err}). {fix}") from None
    missing = [c for c in RUNS_COLUMNS if c not in runs.columns]
    if missing:
        raise MixerError(f"{path} lacks the columns {missing} of a runs table. {fix}")
    return runs


def _learners(runs: pd.DataFrame) -> pd.Series:
    """The learner of every row of runs.csv.

    A cell's learner is written into its metrics.json, so a failed or missing cell has none
    in runs.csv; it takes the learner of its method's other cells (a method names one
    learner), so that it still counts among that method's cells.
    """
    own = runs["learner"] if "learner" in runs else pd.Series(np.nan, index=runs.index)
    known = own.dropna().groupby(runs["method"][own.notna()]).first()
    return own.fillna(runs["method"].map(known))


def geometric_middle(low: float, high: float) -> float:
    """The logged value of a range: errors spread over orders of magnitude, so the middle
    is taken on a log scale (a single value, low == high, is itself)."""
    return math.sqrt(low * high)


def verdict(mean: float, high: float) -> str:
    """Where our mean lies relative to the logged high end."""
    for factor, name in VERDICTS:
        if mean <= factor * high:
            return name
    return ABOVE


def compare(
    runs: pd.DataFrame, anchors: pd.DataFrame, curves: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per anchor and matching method (one ``not run`` row for an anchor without).

    ``curves`` (:func:`read_curves`): the authors' learning curves, for the same-step columns.
    """
    learners = _learners(runs)
    default = runs[runs["regime"] == REGIME]
    rows = []
    for _, anchor in anchors.iterrows():
        anchor_id = anchor.get("anchor", "")
        anchor_id = "" if pd.isna(anchor_id) else str(anchor_id)
        curve = None
        if curves is not None and anchor_id:
            curve = curves[curves["anchor"] == anchor_id]
        logged = {
            "dataset": anchor["dataset"],
            "learner": anchor["learner"],
            "metric": anchor["metric"],
            "logged_low": anchor["low"],
            "logged_high": anchor["high"],
        }
        selection = anchor.get("selection", "")
        sources = {
            "source": anchor["source"],
            "setting": anchor["setting"],
            "anchor": anchor_id,
            "selection": "" if pd.isna(selection) else str(selection),
        }
        # "a|b": the anchor's data as several datasets of the config hold it (e.g. the
        # authors' design, glycolytic_authors, and the default glycolytic).
        names = anchor_datasets(anchor)
        logged["dataset"] = names[0]
        cells = default[
            default["dataset"].isin(names) & (learners[default.index] == anchor["learner"])
        ]
        if cells.empty:
            empty = {"method": "", "ours_mean": np.nan, "ours_std": np.nan, "n_ok": 0}
            steps = same_steps(anchor, cells, np.nan, curve)
            rows.append(
                {
                    **logged,
                    **empty,
                    "n_cells": 0,
                    "ratio": np.nan,
                    "verdict": NOT_RUN,
                    **sources,
                    **steps,
                }
            )
            continue
        for (dataset, method), group in cells.groupby(["dataset", "method"], sort=True):
            logged["dataset"] = dataset
            ok = group[group["status"] == "ok"]
            metric = anchor["metric"]  # absent from runs.csv while no cell has been scored
            values = pd.to_numeric(ok[metric], errors="coerce") if metric in ok else []
            # A non-finite value of an ok cell is no measurement: n_ok counts what is averaged.
            values = np.asarray(values, dtype=float)
            values = values[np.isfinite(values)]
            mean = float(values.mean()) if len(values) else np.nan
            std = float(values.std(ddof=1)) if len(values) > 1 else np.nan
            ratio = mean / geometric_middle(anchor["low"], anchor["high"])
            rows.append(
                {
                    **logged,
                    "method": method,
                    "ours_mean": mean,
                    "ours_std": std,
                    "n_ok": len(values),
                    "n_cells": len(group),
                    "ratio": ratio,
                    "verdict": verdict(mean, anchor["high"]) if len(values) else NO_OK,
                    **sources,
                    **same_steps(anchor, ok, mean, curve),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _number(value: float) -> str:
    # Three significant digits in scientific notation: the MSEs span orders of magnitude.
    return f"{value:.2e}"


def _logged_text(row) -> str:
    low, high = row["logged_low"], row["logged_high"]
    return _number(low) if low == high else f"{_number(low)}–{_number(high)}"


def _ours_text(row) -> str:
    if row["verdict"] == NOT_RUN:
        return NOT_RUN
    if row["n_ok"] == 0:
        return "—"
    text = _number(row["ours_mean"])
    return text if row["n_ok"] < 2 else f"{text} ± {_number(row['ours_std'])}"


def _source_lines(anchors: pd.DataFrame) -> list[str]:
    """One line per distinct (source, setting): which learner and datasets it anchors."""
    lines = []
    for (source, setting), group in anchors.groupby(["source", "setting"], sort=False):
        learners = ", ".join(f"`{name}`" for name in dict.fromkeys(group["learner"]))
        datasets = ", ".join(dict.fromkeys(group["dataset"]))
        ids = [name for name in dict.fromkeys(group.get("anchor", [])) if name]
        named = f" ({', '.join(f'`{name}`' for name in ids)})" if ids else ""
        text = f"- {learners} on {datasets}{named}: {source or 'source not given'}"
        lines.append(text + (f" (setting: {setting})." if setting else "."))
    return lines


def to_markdown(table: pd.DataFrame, anchors: pd.DataFrame) -> str:
    lines = [
        "# Our baselines against their authors' logged runs",
        "",
        "Each row sets one figure the authors of a baseline logged (`logged`: a value, or the "
        "range of their runs) against our runs of every method of that learner on that "
        f"dataset, in the `{REGIME}` regime only (the other regimes change the data, which is "
        "not the authors' protocol). `metric`: `mse_id` is the in-domain test MSE, `mse_ood` "
        "the MSE on the adaptation query set. `ours`: mean ± sample std over the ok seeds; "
        "`ok/cells`: the seeds averaged over the cells of that method. `ratio`: our mean over "
        "the logged value, where a range's value is its geometric middle sqrt(low · high). "
        "`verdict`: our mean against the logged high end: at or below it, within 2x, within "
        f"3x, or above 3x; `{NO_OK}` when no seed finished ok, and `{NOT_RUN}` when the "
        "benchmark has no cell of that learner on that dataset. Numbers have 3 significant "
        "digits. Sources of the logged figures:",
        "",
        *_source_lines(anchors),
        "",
        "| dataset | learner | metric | method | logged | ours | ok/cells | ratio | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        ratio = "—" if pd.isna(row["ratio"]) else f"{row['ratio']:.3g}"
        counts = "—" if row["verdict"] == NOT_RUN else f"{row['n_ok']}/{row['n_cells']}"
        cells = [
            row["dataset"],
            f"`{row['learner']}`",
            row["metric"],
            row["method"] or "—",
            _logged_text(row),
            _ours_text(row),
            counts,
            ratio,
            row["verdict"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if (table["their_runs"] > 0).any() or (table["n_best_val"] > 0).any():
        lines += ["", *same_step_lines(table, _ours_text)]
    return "\n".join(lines) + "\n"


def write_literature(
    runs_file, anchors_file, out_dir, curves_file=None, figure=None
) -> dict[str, Path]:
    """Read runs.csv and the anchors, write literature.csv and literature.md into ``out_dir``.

    ``curves_file``: the authors' learning curves; by default :func:`curves_path` of the
    anchors, used when it exists (an anchors file of one's own may have none). ``figure``:
    also draw the cells' validation curves beside the authors' there (a PNG path).
    """
    anchors = read_anchors(anchors_file)  # first: a bad anchors file is the likelier mistake
    if curves_file is None and curves_path(anchors_file).is_file():
        curves_file = curves_path(anchors_file)
    if curves_file is not None and not Path(curves_file).is_file():
        raise ConfigError(
            f"curves file {curves_file} not found. Fix: give the authors' learning curves "
            f"(columns {','.join(CURVE_COLUMNS)}) or leave the option out."
        )
    curves = read_curves(curves_file, anchors) if curves_file is not None else None
    runs = read_runs(runs_file)
    table = compare(runs, anchors, curves)
    paths = {name: Path(out_dir) / file for name, file in TABLES.items()}
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    atomic_write_text(paths["markdown"], to_markdown(table, anchors))
    if figure is not None:
        from mixer.report.plots.learning_curves import draw_learning_curves

        paths["figure"] = draw_learning_curves(runs, anchors, curves, figure)
    return paths
