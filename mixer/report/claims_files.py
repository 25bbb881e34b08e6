"""claims.csv and claims.md: the verdicts of :func:`mixer.report.claims.judge_claims` as a
table and as the markdown page the report opens with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mixer.records.atomic import atomic_write_text
from mixer.report.claims import FILES, LETTERS, LOG_RATIO, judge_claims


def _cell(text: str) -> str:
    """Text for a markdown table cell: pipes escaped, lines joined by <br>."""
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def _interval(row) -> str:
    """The deciding statistic as 'estimate [low, high] ±half' (a ratio for log10 ratios)."""
    if pd.isna(row["estimate"]) or pd.isna(row["ci_low"]):
        return "—"
    half = (row["ci_high"] - row["ci_low"]) / 2
    if row["scale"] == LOG_RATIO:
        return (
            f"log10 {row['estimate']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] "
            f"±{half:.3f} (×{10 ** row['estimate']:.3g}, ×/÷ {10**half:.3g})"
        )
    return f"{row['estimate']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] ±{half:.3f}"


def to_markdown(table: pd.DataFrame) -> str:
    lines = [
        "# Claims",
        "",
        "What this run says about the three claims of the MixER paper (Nzoyem et al. 2025,",
        "arXiv 2502.05335), computed by `mixer claims` from `runs.csv`; the experiments are the",
        "config's `claims` block.",
        "",
        "Verdict rule: 95% Student-t intervals over seeds; `supported` or `not supported` when",
        "the interval of the claim's statistic excludes 0, by its sign; otherwise `not separable",
        "at this budget` (fewer than 2 seeds, or an interval that holds 0: more seeds or",
        "training might tell); `not run`: a side has no ok cell. Errors are compared on log10",
        "(they span decades), paired by seed: (a) the change of log10(MixER / meta-learner) from",
        "the least to the most data, against each named meta-learner; (b) log10(MixER / naive",
        "MoE) at the most families. (c) compares a score on two datasets: the difference of",
        "means, Welch's interval. Every expected cell counts: one that is not `ok` is named and",
        "counted as the worst outcome of the comparison (the largest error, the lowest score).",
        "A claim over several parts is `not supported` if one part is, `supported` if every",
        "part is, `not run` if a part did not run, and not separable otherwise; `interval` is",
        "that of the part the verdict rests on (claims.csv: `estimate`, `ci_low`, `ci_high`,",
        "`n_pairs`, `deciding`), with its half-width.",
        "",
        "| claim | verdict | interval | what the run shows | experiment | pairs |",
        "|---|---|---|---|---|---:|",
    ]
    for _, row in table.iterrows():
        claim = f"({LETTERS[row['claim']]}) {row['text']}"
        interval = _interval(row)
        if isinstance(row["deciding"], str) and row["deciding"]:
            interval += f" ({row['deciding']})"
        values = [claim, f"**{row['verdict']}**", interval, row["figure"] or "—"]
        values.append(row["experiment"])
        lines.append("| " + " | ".join(map(_cell, values)) + f" | {row['n_pairs']} |")
    return "\n".join(lines) + "\n"


def read_runs(path: str | Path) -> pd.DataFrame:
    """runs.csv of ``mixer aggregate``, names kept as text (a regime called '10' stays '10')."""
    names = {"dataset": str, "regime": str, "method": str, "status": str}
    return pd.read_csv(path, dtype=names)


def write_claims(
    runs_csv: str | Path, claims: dict, out_dir: str | Path, figure: str | Path | None = None
) -> dict[str, Path]:
    """Judge the claims from ``runs_csv`` and write claims.csv and claims.md into ``out_dir``
    (atomically: a killed job leaves no half table), and the claims' figure to ``figure``."""
    runs = read_runs(runs_csv)
    table = judge_claims(runs, claims)
    paths = {name: Path(out_dir) / file for name, file in FILES.items()}
    atomic_write_text(paths["table"], table.to_csv(index=False))
    atomic_write_text(paths["markdown"], to_markdown(table))
    if figure is not None:
        from mixer.report.plots.claims import write_claims_figure  # matplotlib: only here

        write_claims_figure(runs, claims, Path(figure))
        paths["figure"] = Path(figure)
    return paths
