"""The MixER paper's three claims (Nzoyem et al. 2025, arXiv 2502.05335), judged from runs.csv.

Each claim is tested by an experiment that the config's ``claims`` block names (datasets,
regimes, methods, a metric); this module reads the ``ok`` cells of runs.csv and says what the
run shows: ``supported``, ``not supported``, ``not separable at this budget`` or ``not run``.
Nothing is written by hand: the verdicts and the figures quoted next to them are computed here.

- (a) "MixER underperforms state-of-the-art meta-learners in high-data regimes": per dataset,
  the ratio of MixER's mean error to the best meta-learner's (lowest mean) at every regime;
  judged at the last regime (most data) on the paired log10 difference MixER − best.
- (b) "MixER scales to up to ten parametric ODEs": MixER against the naive gradient-gated MoE
  at every regime, with both routing purities; judged at the last regime (most families) on
  the paired log10 difference MixER − naive.
- (c) "context quality is linked to hierarchical structure": per method, a context score on a
  dataset with a clear hierarchy against one with a blurred hierarchy; unpaired intervals.

The statistics are those of :mod:`mixer.report.summary` (``t_interval``, ``paired_difference``) and
so is "separated": the 95% interval of a paired difference excludes 0, or two unpaired
intervals do not overlap. Errors are compared on log10 because they span decades: a fixed
ratio then counts the same whether the errors are 1e-4 or 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixer.errors import ConfigError

# _finite: the metric's finite values of some cells indexed by seed, as the summary uses them.
from mixer.report.statistics import higher_is_better, paired_difference, t_interval
from mixer.report.summary import _finite

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
COLUMNS = ["claim", "text", "experiment", "figure", "verdict", "n_seeds"]
FILES = {"table": "claims.csv", "markdown": "claims.md"}
PURITY = "routing_purity"
# An interval needs two values; below that a comparison is shown but not judged.
MIN_SEEDS = 2


@dataclass
class Side:
    """One dataset × regime × method of runs.csv and a metric's values on its ok cells."""

    dataset: str
    regime: str
    method: str
    values: pd.Series  # finite values of the ok cells, indexed by seed
    statuses: dict  # status -> number of cells runs.csv lists for it

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.regime}/{self.method}"

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if len(self.values) else math.nan

    def absent(self) -> str | None:
        """Why there is nothing to compare on this side (None: there is at least one value)."""
        if not self.statuses:
            return f"{self.label} has no cell in runs.csv"
        if len(self.values) == 0:
            counts = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items()))
            return f"{self.label} has no ok cell with a value ({counts})"
        return None


def side(runs: pd.DataFrame, dataset: str, regime: str, method: str, metric: str) -> Side:
    """The cells of one dataset × regime × method; only ``ok`` cells give values (a diverged
    or stale cell's numbers are not a measurement of the method)."""
    cells = runs[
        (runs["dataset"] == dataset) & (runs["regime"] == regime) & (runs["method"] == method)
    ]
    statuses = {str(k): int(v) for k, v in cells["status"].value_counts().items()}
    ok = cells[cells["status"] == "ok"]
    if metric in runs.columns:
        values = _finite(ok, metric)
    else:
        values = pd.Series(dtype=float)
    return Side(dataset, regime, method, values, statuses)


@dataclass
class Paired:
    """``a − b`` on log10, paired by seed: its mean, 95% interval, p-value and pair count."""

    n: int
    diff: float
    low: float
    high: float
    p: float

    def text(self, a: str, b: str) -> str:
        if self.n < MIN_SEEDS:
            return f"{self.n} ok seed pair(s) of {a} and {b}, fewer than {MIN_SEEDS}"
        p = "p undefined" if math.isnan(self.p) else f"p={self.p:.2g}"
        return (
            f"log10({a}/{b}) {self.diff:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
            f"over {self.n} seed pairs ({p})"
        )


def paired_log10(a: Side, b: Side) -> Paired:
    """``log10 a − log10 b`` over the seeds both sides have.

    The same seed draws the same data for every method, so pairing removes the variation
    between data draws. A value ≤ 0 has no logarithm and is left out (errors are positive).
    """
    logs = [np.log10(s.values[s.values > 0]) for s in (a, b)]
    pairs = pd.concat(logs, axis=1, join="inner")
    x, y = pairs.iloc[:, 0].to_numpy(float), pairs.iloc[:, 1].to_numpy(float)
    diff, p = paired_difference(x, y)
    low, high = t_interval(x - y)
    return Paired(len(pairs), diff, low, high, p)


def _number(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.3g}"


def combine(verdicts: list[str]) -> str:
    """One verdict for a claim tested on several datasets or methods.

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


def _judge_paired(
    mixer: Side, other: Side, other_name: str, worse_supports: bool
) -> tuple[str, str, int]:
    """(verdict, text, seed pairs) of MixER against ``other`` on the paired log10 difference.

    ``worse_supports``: the claim says MixER is worse (a) rather than better (b).
    """
    for s in (mixer, other):
        if s.absent():
            return NOT_RUN, s.absent(), 0
    paired = paired_log10(mixer, other)
    text = paired.text("MixER", other_name)
    if paired.n < MIN_SEEDS:
        return NOT_SEPARABLE, text, paired.n
    if paired.low > 0:  # MixER's error is higher, separated
        return (SUPPORTED if worse_supports else NOT_SUPPORTED), text, paired.n
    if paired.high < 0:  # MixER's error is lower, separated
        return (NOT_SUPPORTED if worse_supports else SUPPORTED), text, paired.n
    return NOT_SEPARABLE, text, paired.n


def _data_regime_dataset(runs: pd.DataFrame, spec: dict, dataset: str) -> tuple[str, str, int]:
    """(verdict, figure text, seed pairs) of claim (a) on one dataset."""
    metric = spec["metric"]
    ratios, best_at = [], {}
    for regime in spec["regimes"]:
        mixer = side(runs, dataset, regime, spec["mixer"], metric)
        learners = [side(runs, dataset, regime, m, metric) for m in spec["meta_learners"]]
        ran = [s for s in learners if len(s.values)]
        # The strongest competitor of each regime: the meta-learner of lowest mean error.
        best = min(ran, key=lambda s: s.mean) if ran else None
        if best is not None:
            best_at[regime] = best
        ratio = mixer.mean / best.mean if best is not None and len(mixer.values) else math.nan
        ratios.append(f"{'—' if math.isnan(ratio) else f'{ratio:.2f}'} ({regime})")
    names = {s.method for s in best_at.values()}
    if len(names) == 1:
        best_text = names.pop()
    else:
        best_text = ", ".join(f"{s.method} ({r})" for r, s in best_at.items()) or "none ran"
    last = spec["regimes"][-1]
    mixer = side(runs, dataset, last, spec["mixer"], metric)
    if mixer.absent():
        verdict, text, n = NOT_RUN, mixer.absent(), 0
    elif last not in best_at:
        learners = ", ".join(spec["meta_learners"])
        verdict, text, n = NOT_RUN, f"no meta-learner ({learners}) has an ok cell at {last}", 0
    else:
        verdict, text, n = _judge_paired(mixer, best_at[last], "best", worse_supports=True)
    figure = (
        f"{dataset}: MixER/best meta-learner {metric} ratio {', '.join(ratios)}; "
        f"best: {best_text}; at {last}: {text} → {verdict}"
    )
    return verdict, figure, n


def _data_regime(runs: pd.DataFrame, spec: dict) -> dict:
    regimes = spec["regimes"]
    experiment = (
        f"{spec['mixer']} vs the best of {', '.join(spec['meta_learners'])} (lowest mean "
        f"{spec['metric']}) on {', '.join(spec['datasets'])} at {', '.join(regimes)} (least "
        f"to most data); judged at {regimes[-1]}: paired log10 difference over seeds"
    )
    parts = [_data_regime_dataset(runs, spec, dataset) for dataset in spec["datasets"]]
    return _row("data_regime", experiment, parts)


def _scaling(runs: pd.DataFrame, spec: dict) -> dict:
    metric, dataset, regimes = spec["metric"], spec["dataset"], spec["regimes"]
    lines = []
    for regime in regimes:
        sides = [side(runs, dataset, regime, spec[m], metric) for m in ("mixer", "naive")]
        purity = [side(runs, dataset, regime, spec[m], PURITY).mean for m in ("mixer", "naive")]
        lines.append(
            f"{regime}: MixER {_number(sides[0].mean)} vs naive {_number(sides[1].mean)} "
            f"{metric}, purity {_number(purity[0])} vs {_number(purity[1])}"
        )
    last = regimes[-1]
    mixer = side(runs, dataset, last, spec["mixer"], metric)
    naive = side(runs, dataset, last, spec["naive"], metric)
    verdict, text, n = _judge_paired(mixer, naive, "naive", worse_supports=False)
    figure = "; ".join(lines) + f"; at {last}: {text} → {verdict}"
    experiment = (
        f"{spec['mixer']} vs the naive MoE {spec['naive']} on {dataset} at "
        f"{', '.join(regimes)} (by number of families; {metric}, {PURITY}); judged at "
        f"{last}: paired log10 difference over seeds"
    )
    return _row("scaling", experiment, [(verdict, figure, n)])


def _interval_text(s: Side) -> str:
    low, high = t_interval(s.values.to_numpy())
    interval = "" if len(s.values) < MIN_SEEDS else f" [{_number(low)}, {_number(high)}]"
    n = len(s.values)
    return f"{s.dataset} {_number(s.mean)}{interval} ({n} seed{'' if n == 1 else 's'})"


def _hierarchy_method(runs: pd.DataFrame, spec: dict, method: str) -> tuple[str, str, int]:
    """(verdict, figure text, seeds) of claim (c) for one method: two datasets, so the seeds
    share no data and the intervals are compared unpaired."""
    metric = spec["metric"]
    clear, blurred = (
        side(runs, spec[k], spec["regime"], method, metric) for k in ("clear", "blurred")
    )
    head = f"{method}: {metric}"
    for s in (clear, blurred):
        if s.absent():
            return NOT_RUN, f"{head}: {s.absent()} → {NOT_RUN}", 0
    n = min(len(clear.values), len(blurred.values))
    text = f"{head} {_interval_text(clear)} vs {_interval_text(blurred)}"
    if n < MIN_SEEDS:
        return (
            NOT_SEPARABLE,
            f"{text}: fewer than {MIN_SEEDS} ok seeds on a side → {NOT_SEPARABLE}",
            n,
        )
    (clear_low, clear_high), (blurred_low, blurred_high) = (
        t_interval(s.values.to_numpy()) for s in (clear, blurred)
    )
    if clear_low > blurred_high:
        verdict = SUPPORTED
    elif clear_high < blurred_low:
        verdict = NOT_SUPPORTED
    else:
        verdict = NOT_SEPARABLE
    return verdict, f"{text} → {verdict}", n


def _hierarchy(runs: pd.DataFrame, spec: dict) -> dict:
    experiment = (
        f"{spec['metric']} of {', '.join(spec['methods'])} on {spec['clear']} (clear "
        f"hierarchy) vs {spec['blurred']} (blurred), regime {spec['regime']}; unpaired 95% "
        "intervals over seeds"
    )
    parts = [_hierarchy_method(runs, spec, method) for method in spec["methods"]]
    return _row("hierarchy", experiment, parts)


def _row(claim: str, experiment: str, parts: list[tuple[str, str, int]]) -> dict:
    """One line of claims.csv from the verdict, figure text and seeds of each part."""
    return {
        "claim": claim,
        "text": CLAIMS[claim],
        "experiment": experiment,
        "figure": "\n".join(text for _, text, _ in parts),
        "verdict": combine([verdict for verdict, _, _ in parts]),
        # The fewest seeds behind any part's comparison: what the verdict rests on.
        "n_seeds": min(n for _, _, n in parts),
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
            rows.append(
                {
                    "claim": claim,
                    "text": CLAIMS[claim],
                    "experiment": f"none: the config has no claims.{claim} block",
                    "figure": "",
                    "verdict": NOT_RUN,
                    "n_seeds": 0,
                }
            )
            continue
        _check_metric(claim, spec)
        row = judge(runs, spec)
        if spec["metric"] not in runs.columns:  # say why every side is empty
            reason = f"runs.csv has no column {spec['metric']!r}: no cell reported it"
            row["figure"] = f"{reason}\n{row['figure']}"
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
