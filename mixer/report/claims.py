"""The MixER paper's three claims (Nzoyem et al. 2025, arXiv 2502.05335), judged from runs.csv.

Each claim is tested by an experiment that the config's ``claims`` block names (datasets,
regimes, methods, a metric); this module reads runs.csv and says what the run shows:
``supported``, ``not supported``, ``not separable at this budget`` or ``not run``. Nothing is
written by hand: the verdicts, the figures quoted next to them and the estimate columns of
claims.csv are computed here, from the same numbers.

- (a) "MixER underperforms state-of-the-art meta-learners in high-data regimes": per dataset
  and per named meta-learner, the trend of MixER's error ratio over the data regimes, seed by
  seed: log10(MixER/L) at the last regime (most data) minus log10(MixER/L) at the first.
  Supported when the ratio grows with data against every meta-learner (MixER falls behind as
  data grows), not supported when it shrinks against one.
- (b) "MixER scales to up to ten parametric ODEs": MixER against the naive gradient-gated MoE
  at every regime, with both routing purities; judged at the last regime (most families) on
  the paired log10 ratio MixER/naive (supported when MixER's error is lower).
- (c) "context quality is linked to hierarchical structure": per method, a context score on a
  dataset with a clear hierarchy minus the score on one with a blurred hierarchy: the
  datasets differ, so the difference is unpaired (Welch's interval).

Every expected cell counts. A cell that is not ``ok`` (diverged, failed, stale, missing, or
ok without a value) is named in the figure and counted as the worst outcome of the
comparison: the largest error (the lowest score) that any cell of the comparison reached.
So a diverged MixER seed counts against MixER, never for it, and a claim does not read
``supported`` because the seeds that went wrong were left out. A side with no ok value at
all is ``not run``. "Separated" is a 95% Student-t interval that excludes 0. Errors are
compared on log10 (they span decades: a fixed ratio counts the same at 1e-4 as at 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mixer.errors import ConfigError
from mixer.report.statistics import (
    higher_is_better,
    log10_positive,
    paired_difference,
    t_interval,
    welch_interval,
)

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
NOT_SEPARABLE = "not separable at this budget"
NOT_RUN = "not run"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, NOT_SEPARABLE, NOT_RUN)

# The claims in the paper's words, in the order the table lists them.
CLAIMS = {
    "data_regime": "MixER underperforms state-of-the-art meta-learners in high-data regimes",
    "scaling": "MixER scales to up to ten parametric ODEs",
    "hierarchy": "Context quality is linked to hierarchical structure",
}
LETTERS = dict(zip(CLAIMS, "abc", strict=True))
# estimate/ci_low/ci_high: the deciding part's statistic on `scale`; n_pairs: its seed pairs
# (for (c), the fewer seeds of its two sides); deciding: which part that is.
COLUMNS = [
    "claim",
    "text",
    "experiment",
    "figure",
    "verdict",
    "estimate",
    "ci_low",
    "ci_high",
    "n_pairs",
    "scale",
    "deciding",
]
FILES = {"table": "claims.csv", "markdown": "claims.md"}
PURITY = "routing_purity"
# An interval needs two values; below that a comparison is shown but not judged.
MIN_SEEDS = 2
LOG_RATIO = "log10 ratio"
DIFFERENCE = "difference"


@dataclass
class Side:
    """One dataset × regime × method of runs.csv: a metric's values on its ok cells and the
    expected cells without one."""

    dataset: str
    regime: str
    method: str
    values: pd.Series  # finite values of the ok cells, indexed by seed
    not_ok: dict = field(default_factory=dict)  # seed -> status of a cell without a value

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.regime}/{self.method}"

    def absent(self) -> str | None:
        """Why there is nothing to compare on this side (None: at least one value)."""
        if not len(self.values) and not self.not_ok:
            return f"{self.label} has no cell in runs.csv"
        if not len(self.values):
            counts = pd.Series(list(self.not_ok.values())).value_counts().sort_index()
            text = ", ".join(f"{n} {status}" for status, n in counts.items())
            return f"{self.label} has no ok cell with a value ({text})"
        return None

    def named_not_ok(self) -> list[str]:
        return [f"{self.label} seed {s} {status}" for s, status in sorted(self.not_ok.items())]


def side(runs: pd.DataFrame, dataset: str, regime: str, method: str, metric: str) -> Side:
    """The expected cells of one dataset × regime × method (runs.csv lists every one)."""
    cells = runs[
        (runs["dataset"] == dataset) & (runs["regime"] == regime) & (runs["method"] == method)
    ]
    seeds = cells["seed"].to_numpy()
    raw = pd.to_numeric(cells[metric], errors="coerce") if metric in runs.columns else None
    values = pd.Series(np.nan if raw is None else raw.to_numpy(float), index=seeds)
    ok = (cells["status"] == "ok").to_numpy() & np.isfinite(values.to_numpy())
    status = cells["status"].where(cells["status"] != "ok", "ok without a value").to_numpy()
    not_ok = {int(s): str(st) for s, st, good in zip(seeds, status, ok, strict=True) if not good}
    return Side(dataset, regime, method, values[ok].astype(float), not_ok)


def on_scale(values: pd.Series, errors: bool) -> pd.Series:
    return pd.Series(log10_positive(values.to_numpy()), index=values.index) if errors else values


def completed(sides: list[Side], errors: bool) -> tuple[list[pd.Series], list[str]]:
    """Each side's values (log10 for errors) over all its expected seeds, a cell without a
    value set to the worst value any side reached; and the names of those cells."""
    scaled = [on_scale(s.values, errors) for s in sides]
    seen = pd.concat(scaled)
    worst = seen.max() if errors else seen.min()
    filled = []
    for s, values in zip(sides, scaled, strict=True):
        extra = pd.Series(worst, index=sorted(s.not_ok), dtype=float)
        filled.append(pd.concat([values, extra]).sort_index())
    return filled, [name for s in sides for name in s.named_not_ok()]


@dataclass
class Part:
    """One comparison of a claim: verdict, text, and the statistic the verdict rests on."""

    verdict: str
    text: str
    name: str
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    scale: str = LOG_RATIO


def judged(name: str, values: np.ndarray, increase_supports: bool, head: str) -> Part:
    """The part whose statistic is the mean of ``values`` (paired, one per seed): separated
    when its t-interval excludes 0; ``increase_supports``: a positive mean supports the claim."""
    n = len(values)
    if n < MIN_SEEDS:
        text = f"{head}: {n} seed pair(s), fewer than {MIN_SEEDS} → {NOT_SEPARABLE}"
        return Part(NOT_SEPARABLE, text, name, float(np.mean(values)) if n else math.nan, n=n)
    mean = float(values.mean())
    low, high = t_interval(values)
    _, p = paired_difference(values, np.zeros_like(values))
    if low > 0 or high < 0:
        verdict = SUPPORTED if (low > 0) == increase_supports else NOT_SUPPORTED
    else:
        verdict = NOT_SEPARABLE
    p_text = "p undefined" if math.isnan(p) else f"p={p:.2g}"
    text = f"{head} {_ratio(mean, low, high)} over {n} seed pairs ({p_text}) → {verdict}"
    return Part(verdict, text, name, mean, low, high, n)


def _ratio(mean: float, low: float, high: float) -> str:
    """'×r [lo, hi]' from a log10 mean and interval (the same numbers as the verdict)."""
    return f"×{10**mean:.3g} [{10**low:.3g}, {10**high:.3g}]"


def _number(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.3g}"


def _gmean(s: Side) -> float:
    return float(10 ** np.mean(log10_positive(s.values.to_numpy()))) if len(s.values) else math.nan


def _counted(names: list[str]) -> str:
    return f"; counted as the worst outcome: {', '.join(names)}" if names else ""


def combine(verdicts: list[str]) -> str:
    """One verdict for a claim tested on several datasets, meta-learners or methods.

    One part that contradicts the claim is enough to say it is not supported; it is supported
    only when every part supports it; a part that did not run leaves it untested (`not run`);
    otherwise the seeds cannot tell.
    """
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if not verdicts or NOT_RUN in verdicts:
        return NOT_RUN
    return NOT_SEPARABLE


def _not_run(sides: list[Side], name: str, head: str) -> Part | None:
    for s in sides:
        if s.absent():
            return Part(NOT_RUN, f"{head}: {s.absent()} → {NOT_RUN}", name)
    return None


def _data_regime_part(runs: pd.DataFrame, spec: dict, dataset: str, learner: str) -> Part:
    """Claim (a) on one dataset against one meta-learner: the trend of log10(MixER/L)."""
    metric, regimes = spec["metric"], spec["regimes"]
    first, last = regimes[0], regimes[-1]
    name = f"{dataset}: MixER vs {learner}"
    ends = [first, last] if first != last else [last]
    sides = [side(runs, dataset, r, m, metric) for r in ends for m in (spec["mixer"], learner)]
    gaps = []
    for regime in regimes:  # the ratio at every regime, from the ok pairs (text only)
        mixer, other = (side(runs, dataset, regime, m, metric) for m in (spec["mixer"], learner))
        pairs = pd.concat([on_scale(mixer.values, True), on_scale(other.values, True)], axis=1)
        logs = (pairs.iloc[:, 0] - pairs.iloc[:, 1]).dropna()
        gaps.append(f"{'—' if logs.empty else f'×{10 ** logs.mean():.3g}'} ({regime})")
    head = f"{name}: {metric} ratio {', '.join(gaps)}"
    missing = _not_run(sides, name, head)
    if missing:
        return missing
    filled, names = completed(sides, errors=True)
    gap_last = filled[-2] - filled[-1]
    if len(ends) == 1:  # one regime: no trend, the gap itself
        trend, what = gap_last.dropna(), f"at {last}"
    else:
        trend, what = (gap_last - (filled[0] - filled[1])).dropna(), f"trend {first} → {last}"
    part = judged(name, trend.to_numpy(), True, f"{head}; {what}")
    part.text += _counted(names)
    return part


def _data_regime(runs: pd.DataFrame, spec: dict) -> dict:
    regimes = spec["regimes"]
    experiment = (
        f"{spec['mixer']} vs each of {', '.join(spec['meta_learners'])} on "
        f"{', '.join(spec['datasets'])} at {', '.join(regimes)} (least to most data), "
        f"{spec['metric']}: the change of log10(MixER/meta-learner) from {regimes[0]} to "
        f"{regimes[-1]}, paired by seed (supported: MixER falls behind every one as data grows)"
    )
    parts = [
        _data_regime_part(runs, spec, dataset, learner)
        for dataset in spec["datasets"]
        for learner in spec["meta_learners"]
    ]
    return _row("data_regime", experiment, parts)


def _scaling(runs: pd.DataFrame, spec: dict) -> dict:
    metric, dataset, regimes = spec["metric"], spec["dataset"], spec["regimes"]
    lines = []
    for regime in regimes:
        sides = [side(runs, dataset, regime, spec[m], metric) for m in ("mixer", "naive")]
        purity = [side(runs, dataset, regime, spec[m], PURITY) for m in ("mixer", "naive")]
        purity_means = [p.values.mean() if len(p.values) else math.nan for p in purity]
        lines.append(
            f"{regime}: MixER {_number(_gmean(sides[0]))} vs naive {_number(_gmean(sides[1]))} "
            f"{metric}, purity {_number(purity_means[0])} vs {_number(purity_means[1])}"
        )
    last = regimes[-1]
    sides = [side(runs, dataset, last, spec[m], metric) for m in ("mixer", "naive")]
    name, head = f"{dataset}: MixER vs naive", f"{'; '.join(lines)}; at {last}: MixER/naive"
    part = _not_run(sides, name, head)
    if part is None:
        filled, names = completed(sides, errors=True)
        ratio = (filled[0] - filled[1]).dropna().to_numpy()
        part = judged(name, ratio, False, head)
        part.text += _counted(names)
    experiment = (
        f"{spec['mixer']} vs the naive MoE {spec['naive']} on {dataset} at "
        f"{', '.join(regimes)} (by number of families; {metric} geometric means, {PURITY}); "
        f"judged at {last}: paired log10 ratio over seeds (supported: MixER's error lower)"
    )
    return _row("scaling", experiment, [part])


def _interval_text(s: Side, values: pd.Series) -> str:
    low, high = t_interval(values.to_numpy())
    n = len(values)
    interval = "" if n < MIN_SEEDS else f" [{_number(low)}, {_number(high)}]"
    return f"{s.dataset} {_number(values.mean())}{interval} ({n} seed{'' if n == 1 else 's'})"


def _hierarchy_method(runs: pd.DataFrame, spec: dict, method: str) -> Part:
    """Claim (c) for one method: score on the clear dataset minus the blurred one, unpaired."""
    metric = spec["metric"]
    sides = [side(runs, spec[k], spec["regime"], method, metric) for k in ("clear", "blurred")]
    head = f"{method}: {metric}"
    missing = _not_run(sides, method, head)
    if missing:
        return missing
    (clear, blurred), names = completed(sides, errors=False)
    text = f"{head} {_interval_text(sides[0], clear)} vs {_interval_text(sides[1], blurred)}"
    n = min(len(clear), len(blurred))
    diff, low, high = welch_interval(clear.to_numpy(), blurred.to_numpy())
    if n < MIN_SEEDS:
        verdict = NOT_SEPARABLE
        text += f": fewer than {MIN_SEEDS} seeds on a side → {verdict}"
    else:
        verdict = SUPPORTED if low > 0 else NOT_SUPPORTED if high < 0 else NOT_SEPARABLE
        text += f"; clear − blurred {diff:+.3f} [{low:+.3f}, {high:+.3f}] (Welch) → {verdict}"
    return Part(verdict, text + _counted(names), method, diff, low, high, n, DIFFERENCE)


def _hierarchy(runs: pd.DataFrame, spec: dict) -> dict:
    experiment = (
        f"{spec['metric']} of {', '.join(spec['methods'])} on {spec['clear']} (clear "
        f"hierarchy) minus {spec['blurred']} (blurred), regime {spec['regime']}; Welch 95% "
        "interval of the difference of means over seeds (unpaired: two datasets)"
    )
    parts = [_hierarchy_method(runs, spec, method) for method in spec["methods"]]
    return _row("hierarchy", experiment, parts)


def deciding_part(parts: list[Part], verdict: str) -> Part:
    """The part the claim's verdict rests on: the first that contradicts it, did not run or
    cannot tell; for a supported claim, the weakest (interval bound nearest to 0)."""
    for part in parts:
        if part.verdict == verdict and verdict != SUPPORTED:
            return part
    return min(parts, key=lambda p: min(abs(p.low), abs(p.high)))


def _row(claim: str, experiment: str, parts: list[Part]) -> dict:
    """One line of claims.csv from the parts of a claim."""
    verdict = combine([p.verdict for p in parts])
    decides = deciding_part(parts, verdict)
    return {
        "claim": claim,
        "text": CLAIMS[claim],
        "experiment": experiment,
        "figure": "\n".join(p.text for p in parts),
        "verdict": verdict,
        "estimate": decides.estimate,
        "ci_low": decides.low,
        "ci_high": decides.high,
        "n_pairs": decides.n,
        "scale": decides.scale,
        "deciding": decides.name if len(parts) > 1 else "",
    }


def _check_metric(claim: str, spec: dict) -> None:
    """(a) and (b) compare errors (lower is better, on log10), (c) a score (higher is better):
    a metric of the other kind would turn the verdict around."""
    metric = spec["metric"]
    if claim == "hierarchy" and not higher_is_better(metric):
        raise ConfigError(
            f"claims.{claim}.metric: '{metric}' is not a score where higher is better "
            "(purity, ARI, NMI, accuracy), which this claim compares"
        )
    if claim != "hierarchy" and higher_is_better(metric):
        raise ConfigError(
            f"claims.{claim}.metric: '{metric}' is a score where higher is better; this claim "
            "compares errors (lower is better, on log10)"
        )


JUDGES = {"data_regime": _data_regime, "scaling": _scaling, "hierarchy": _hierarchy}


def judge_claims(runs: pd.DataFrame, claims: dict) -> pd.DataFrame:
    """claims.csv as a frame: one row per claim, in the paper's order.

    ``claims``: the config's ``claims`` block with its defaults (a claim that is null or
    absent is ``not run``). A metric that runs.csv lacks gives ``not run`` with that reason.
    """
    rows = []
    for claim, judge in JUDGES.items():
        spec = (claims or {}).get(claim)
        if spec is None:
            none = Part(NOT_RUN, "", "")
            row = _row(claim, f"none: the config has no claims.{claim} block", [none])
            rows.append(row)
            continue
        _check_metric(claim, spec)
        row = judge(runs, spec)
        if spec["metric"] not in runs.columns:  # say why every side is empty
            reason = f"runs.csv has no column {spec['metric']!r}: no cell reported it"
            row["figure"] = f"{reason}\n{row['figure']}"
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
