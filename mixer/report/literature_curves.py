"""The authors' learning curves beside our cells (the second table of literature.md).

A curves file (by default ``<anchors stem>_curves.csv`` beside the anchors file, e.g.
``config/literature_curves.csv``) holds rows ``anchor, run, step, native_step, value,
source``: the test value the authors logged after ``step`` gradient steps of their run
``run`` for the figure with that ``anchor`` id (:mod:`mixer.report.literature`). Each of our
methods is set against the curve at its own step count (``inner_steps`` of runs.csv), read on
a log scale between the two logged points around it (:func:`log_interpolate`): the *fair
ratio* compares equal training budgets, where the anchor itself is the authors' end of a far
longer run, often a checkpoint chosen on test data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mixer.errors import ConfigError

CURVE_COLUMNS = ("anchor", "run", "step", "native_step", "value", "source")
# A runs.csv column `{BEST_ON_VAL}{metric}` holds a cell's score of its state chosen on
# validation data (metrics.json's best_val block, training's val_every > 0); without it only
# the final model is scored.
BEST_ON_VAL = "best_val."
STEPS = "inner_steps"  # runs.csv: gradient steps of a cell's training
# The columns same_steps adds to a row of the literature table (NaN where the anchor has no
# curve or the cells no step count).
SAME_STEP_COLUMNS = [
    "our_steps",
    "theirs_at_our_steps_low",
    "theirs_at_our_steps_high",
    "their_runs_at_our_steps",
    "their_runs",
    "fair_ratio",
    "end_ratio",
    "their_end_step",
    "their_end_low",
    "their_end_high",
    "ours_best_val_mean",
    "n_best_val",
]


def anchor_datasets(anchor) -> list[str]:
    """The dataset names of an anchor: its ``dataset`` field, several joined by ``|``."""
    return str(anchor["dataset"]).split("|")


def curves_path(anchors_path) -> Path:
    """Where the anchors' learning curves are looked for: ``<stem>_curves.csv`` beside them."""
    anchors_path = Path(anchors_path)
    return anchors_path.with_name(f"{anchors_path.stem}_curves.csv")


def read_curves(path, anchors: pd.DataFrame) -> pd.DataFrame:
    """The learning curves file, checked: every column, known anchor ids, steps and values > 0,
    one value per (anchor, run, step). Rows are returned sorted by anchor, run and step.

    Raises a ConfigError naming the file (and the row, counted as in the file) otherwise.
    """
    path = Path(path)
    fix = (
        f"Fix: give a CSV with the header '{','.join(CURVE_COLUMNS)}', one row per logged "
        "value, each anchor an id of the anchors file (see config/literature_curves.csv)."
    )
    try:
        curves = pd.read_csv(path, dtype={"anchor": str, "run": str, "native_step": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ConfigError(f"curves file {path} is not a readable CSV ({err}). {fix}") from None
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise ConfigError(f"curves file {path} lacks the columns {missing}. {fix}")
    known = set(anchors["anchor"]) - {""}
    for index, row in curves.iterrows():
        where = f"curves file {path}, line {index + 2}"  # the header is line 1
        if row["anchor"] not in known:
            raise ConfigError(
                f"{where}: anchor {row['anchor']!r} is not an id of the anchors. {fix}"
            )
        step, value = (pd.to_numeric(row[k], errors="coerce") for k in ("step", "value"))
        if not (np.isfinite(step) and step > 0 and np.isfinite(value) and value > 0):
            raise ConfigError(
                f"{where}: step {row['step']!r} and value {row['value']!r} must be positive "
                f"numbers (a log scale has no zero). {fix}"
            )
    curves[["step", "value"]] = curves[["step", "value"]].astype(float)
    curves["run"] = curves["run"].fillna("").astype(str)
    twice = curves.duplicated(["anchor", "run", "step"], keep=False)
    if twice.any():
        first = curves[twice].iloc[0]
        raise ConfigError(
            f"curves file {path}: anchor {first['anchor']!r}, run {first['run']!r} has two "
            f"values at step {first['step']:g}. {fix}"
        )
    return curves.sort_values(["anchor", "run", "step"], kind="stable").reset_index(drop=True)


def log_interpolate(steps, values, at: float) -> float:
    """The logged curve's value at step ``at``: the logged value at a logged step, and between
    two logged steps s0 < at < s1 the straight line in (log step, log value), i.e.
    v0 · (v1 / v0) ** (log(at / s0) / log(s1 / s0)). NaN outside [first, last] logged step
    (a curve is not extrapolated). ``steps`` ascending and positive, ``values`` positive.
    """
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    if not len(steps) or not np.isfinite(at) or at < steps[0] or at > steps[-1]:
        return math.nan
    right = int(np.searchsorted(steps, at, side="left"))
    if steps[right] == at:
        return float(values[right])
    s0, s1, v0, v1 = steps[right - 1], steps[right], values[right - 1], values[right]
    weight = math.log(at / s0) / math.log(s1 / s0)
    return float(math.exp((1 - weight) * math.log(v0) + weight * math.log(v1)))


def curve_at(curve: pd.DataFrame, step: float) -> tuple[float, float, int, int]:
    """(low, high) over the runs of one anchor's curve at ``step``, the number of runs whose
    logged steps reach it, and the number of runs (NaN, NaN when none reaches it)."""
    values = [
        log_interpolate(run["step"], run["value"], step)
        for _, run in curve.groupby("run", sort=True)
    ]
    found = [v for v in values if np.isfinite(v)]
    if not found:
        return math.nan, math.nan, 0, len(values)
    return min(found), max(found), len(found), len(values)


def curve_end(curve: pd.DataFrame) -> tuple[float, float, float]:
    """(last logged step, low, high) of one anchor's curve: each run's last logged value; the
    step is the largest of the runs' last steps."""
    last = curve.groupby("run", sort=True).tail(1)
    return float(last["step"].max()), float(last["value"].min()), float(last["value"].max())


def _finite(values) -> np.ndarray:
    values = np.asarray(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce"), float)
    return values[np.isfinite(values)]


def same_steps(anchor, ok: pd.DataFrame, mean: float, curve: pd.DataFrame | None) -> dict:
    """The same-step columns of one anchor and one method's ok cells (see COLUMNS)."""
    metric = anchor["metric"]
    steps = _finite(ok[STEPS]) if STEPS in ok else np.array([])
    best = _finite(ok[BEST_ON_VAL + metric]) if BEST_ON_VAL + metric in ok else np.array([])
    # Cells of one method train for the same budget; a diverged one is not among the ok.
    our_steps = float(np.median(steps)) if len(steps) else np.nan
    row = {
        "our_steps": our_steps,
        "theirs_at_our_steps_low": np.nan,
        "theirs_at_our_steps_high": np.nan,
        "their_runs_at_our_steps": 0,
        "their_runs": 0,
        "fair_ratio": np.nan,
        "end_ratio": np.nan,
        "their_end_step": np.nan,
        "their_end_low": np.nan,
        "their_end_high": np.nan,
        "ours_best_val_mean": float(best.mean()) if len(best) else np.nan,
        "n_best_val": len(best),
    }
    if curve is None or curve.empty:
        return row
    low, high, reached, runs = curve_at(curve, our_steps)
    end_step, end_low, end_high = curve_end(curve)
    row.update(
        {
            "theirs_at_our_steps_low": low,
            "theirs_at_our_steps_high": high,
            "their_runs_at_our_steps": reached,
            "their_runs": runs,
            "fair_ratio": mean / math.sqrt(low * high) if reached else np.nan,
            # Against their last logged value once our budget reaches its step.
            "end_ratio": mean / math.sqrt(end_low * end_high) if our_steps >= end_step else np.nan,
            "their_end_step": end_step,
            "their_end_low": end_low,
            "their_end_high": end_high,
        }
    )
    return row


def _number(value: float) -> str:
    return f"{value:.2e}"  # as the first table: 3 significant digits


def _range_text(low: float, high: float) -> str:
    return _number(low) if low == high else f"{_number(low)}–{_number(high)}"


def _theirs_at_text(row) -> str:
    if row["their_runs"] == 0:
        return "no curve"
    if pd.isna(row["our_steps"]):
        return "—"
    if row["their_runs_at_our_steps"] == 0:
        if row["our_steps"] > row["their_end_step"]:
            return f"beyond their last step ({row['their_end_step']:,.0f})"
        return "before their first logged step"
    text = _range_text(row["theirs_at_our_steps_low"], row["theirs_at_our_steps_high"])
    if row["their_runs_at_our_steps"] < row["their_runs"]:
        text += f" ({row['their_runs_at_our_steps']} of {row['their_runs']} runs)"
    return text


def same_step_lines(table: pd.DataFrame, ours_text: Callable[[pd.Series], str]) -> list[str]:
    """The second table of literature.md: our cells against the authors' curve at our own
    step count; ``ours_text`` writes a row's mean ± std as the first table does."""
    lines = [
        "## At the same number of steps",
        "",
        "The authors trained far longer than our budgets; this table reads their learning curve "
        "(the test values they logged during training, `config/literature_curves.csv`) at our "
        "step count. `steps`: the gradient steps of our cells (`inner_steps` of runs.csv: "
        "CoDA's joint steps, the alternating loop's context plus model steps, CAVIA's "
        "meta-updates; the median over the ok seeds), counted as the authors' are (CoDA: "
        "full-batch epochs; NCF: the model plus context steps, 2 at outer step 0 and 2 × "
        "inner steps at each outer step after it; CAVIA: meta-iterations). "
        "`theirs at our steps`: their logged value at that step, and between two logged steps "
        "**interpolated on a log scale** (log value linear in log step); a range over their "
        "runs; `no curve` when they logged none for that figure (adaptation figures: only "
        "their final model was adapted). `ours`: our final models, as above. `ours "
        "best-on-val`: our checkpoints chosen on validation data; `not recorded` when the "
        "runs keep only the final model. `fair ratio`: ours over theirs at our steps (a "
        "range's geometric middle). `their end`: their last logged value and its step, and where "
        "our steps reach it, our final value over it. `their "
        "figure`: which checkpoint the figure in `logged` is; one chosen on test data is "
        "optimistic.",
        "",
        "| anchor | dataset | learner | metric | method | steps | theirs at our steps | ours "
        "| ours best-on-val | fair ratio | their end | their figure |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        steps = "—" if pd.isna(row["our_steps"]) else f"{row['our_steps']:,.0f}"
        if row["n_best_val"] > 0:
            seeds = "seed" if row["n_best_val"] == 1 else "seeds"
            best = f"{_number(row['ours_best_val_mean'])} ({row['n_best_val']} {seeds})"
        else:
            best = "—" if row["n_cells"] == 0 else "not recorded"
        fair = "—" if pd.isna(row["fair_ratio"]) else f"{row['fair_ratio']:.3g}"
        at_end = "—" if pd.isna(row["end_ratio"]) else f"{row['end_ratio']:.3g}"
        end = "—"
        if row["their_runs"] > 0:
            end_value = _range_text(row["their_end_low"], row["their_end_high"])
            end = f"{end_value} at {row['their_end_step']:,.0f}"
            end = end if at_end == "—" else f"{end} (ours / theirs {at_end})"
        cells = [
            f"`{row['anchor']}`" if row["anchor"] else "—",
            row["dataset"],
            f"`{row['learner']}`",
            row["metric"],
            row["method"] or "—",
            steps,
            _theirs_at_text(row),
            ours_text(row),
            best,
            fair,
            end,
            row["selection"] or "—",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines
