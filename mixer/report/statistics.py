"""The statistics of the tables and the claims: which metrics are errors (aggregated on log10)
or scores (higher is better), Student-t intervals and paired tests over seeds."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
HIGHER_IS_BETTER = {"purity", "ari", "nmi", "accuracy"}
# Error metrics (aggregated on log10): any name with an "mse" or "loss" part.
ERROR_PARTS = {"mse", "loss"}


def higher_is_better(metric: str) -> bool:
    """Purity, ARI, NMI and accuracies are better high; errors, time and memory low."""
    return bool(HIGHER_IS_BETTER & set(metric.split("_")))


def on_log_scale(metric: str) -> bool:
    """Errors (an ``mse`` or ``loss`` part in the name) are aggregated on log10."""
    return bool(ERROR_PARTS & set(metric.split("_"))) and not higher_is_better(metric)


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t confidence interval of the mean: mean ± t_{(1+c)/2, n-1} · std / √n.

    ``std`` is the sample standard deviation (ddof 1); (NaN, NaN) with fewer than two values.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = float(values.mean())
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return mean - float(half), mean + float(half)


def log10_positive(values) -> np.ndarray:
    """log10 of errors; an error of exactly 0 (a perfect prediction) counts as 1e-300 so that it
    is not dropped (its geometric mean is then ~0, which is what it is)."""
    values = np.asarray(values, dtype=float)
    return np.log10(np.maximum(values, 1e-300))


def centre_and_interval(metric: str, values) -> tuple[float, float, float, float]:
    """(centre, spread, ci_low, ci_high) of a metric's seed values.

    Errors: the geometric mean 10**mean(log10 v), the sample std of log10 v and the
    back-transformed t-interval of the mean of log10 v. Others: mean, sample std, t-interval.
    ``spread`` is NaN with fewer than two values, the interval too.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan, math.nan
    scale = log10_positive(values) if on_log_scale(metric) else values
    mean = float(scale.mean())
    spread = float(scale.std(ddof=1)) if len(values) > 1 else math.nan
    low, high = t_interval(scale)
    if on_log_scale(metric):
        return 10.0**mean, spread, 10.0**low, 10.0**high
    return mean, spread, low, high


def paired_difference(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(mean of values − reference, two-sided paired t-test p-value) of seed-aligned arrays.

    The p-value is ``scipy.stats.ttest_rel``'s. NaN difference without pairs; NaN p-value
    with fewer than two pairs, and where the differences have no spread (equal up to
    rounding, e.g. deterministic timings): the t statistic is then undefined, not infinite.
    """
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    differences = values - reference
    diff = float(differences.mean())
    spread = differences.max() - differences.min()
    if len(values) < 2 or spread <= 1e-9 * max(np.abs(values).max(), np.abs(reference).max()):
        return diff, math.nan
    return diff, float(stats.ttest_rel(values, reference).pvalue)


def welch_interval(
    a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(mean a − mean b, low, high): Welch's t-interval of a difference of two unpaired means
    (Welch–Satterthwaite degrees of freedom). NaN bounds with fewer than two values a side; a
    point interval where neither side varies."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return diff, diff - half, diff + half
