"""claims.csv and claims.md: the verdicts of :func:`mixer.report.claims.judge_claims` as a
table and as the markdown page the report opens with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mixer.records.atomic import atomic_write_text
from mixer.report.claims import FILES, LETTERS, judge_claims


def _cell(text: str) -> str:
    """Text for a markdown table cell: pipes escaped, lines joined by <br>."""
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def to_markdown(table: pd.DataFrame) -> str:
    lines = [
        "# Claims",
        "",
        "What this run says about the three claims of the MixER paper (Nzoyem et al. 2025,",
        "arXiv 2502.05335), computed by `mixer claims` from `runs.csv`, cells with status `ok`",
        "only; the experiments are the config's `claims` block.",
        "",
        "Verdict rule: 95% Student-t intervals over seeds. Errors are compared on log10 (they",
        "span decades). Where both sides share their data seed by seed (same dataset, (a) and",
        "(b)), the interval is that of the paired difference: `supported` or `not supported`",
        "when it excludes 0, by its sign. Where they do not ((c): two datasets), the two",
        "intervals must not overlap. Otherwise `not separable at this budget` (fewer than 2",
        "seeds on a side, or intervals that the seeds cannot tell apart: more seeds or training",
        "might); `not run`: the cells are not in `runs.csv` or none of them is `ok`. A claim",
        "over several datasets or methods is `not supported` if one part is, `supported` if",
        "every part is, `not run` if a part did not run, and not separable otherwise.",
        "",
        "| claim | verdict | what the run shows | experiment | seeds |",
        "|---|---|---|---|---:|",
    ]
    for _, row in table.iterrows():
        claim = f"({LETTERS[row['claim']]}) {row['text']}"
        values = [claim, f"**{row['verdict']}**", row["figure"] or "—", row["experiment"]]
        lines.append("| " + " | ".join(map(_cell, values)) + f" | {row['n_seeds']} |")
    return "\n".join(lines) + "\n"


def read_runs(path: str | Path) -> pd.DataFrame:
    """runs.csv of ``mixer aggregate``, names kept as text (a regime called '10' stays '10')."""
    names = {"dataset": str, "regime": str, "method": str, "status": str}
    return pd.read_csv(path, dtype=names)


def write_claims(runs_csv: str | Path, claims: dict, out_dir: str | Path) -> dict[str, Path]:
    """Judge the claims from ``runs_csv`` and write claims.csv and claims.md into ``out_dir``
    (atomically: a killed job leaves no half table)."""
    table = judge_claims(read_runs(runs_csv), claims)
    paths = {name: Path(out_dir) / file for name, file in FILES.items()}
    atomic_write_text(paths["table"], table.to_csv(index=False))
    atomic_write_text(paths["markdown"], to_markdown(table))
    return paths
