"""A cell's cluster resources from its measured cost class (no torch here).

``config/costs.csv`` is written by ``benchmarks/bench_paper_cost.py --costs``: per cost class
(dataset, method, regime) the measured seconds per outer step (the larger of the timing at
initialisation and after a short training), per adaptation step, and the peak resident memory
of the process that timed it, with the fingerprint of the settings it was timed at. A cell
trusts its class's row only when that fingerprint is its own (same learner, sizes, solver,
inner steps per outer step); its own budget multiplies the per-step figures.

Requests are the measured need times ``MARGIN`` plus ``SLACK_MIN`` minutes (start-up, data
loading, a slower node), and memory the peak times ``MARGIN``; a class that was not timed keeps
the rule's flat defaults. Times were measured on one CPU core, so on a GPU they are an upper
bound.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

MARGIN = 1.5
SLACK_MIN = 10
# A CUDA process holds 1-2 GB of host memory (context, libraries) before its first tensor, which
# a peak measured on the CPU does not see.
MIN_MEM_MB = 3000
DEFAULTS = {"train": {"runtime": 120, "mem_mb": 4000}, "evaluate": {"runtime": 60, "mem_mb": 4000}}
# What changes a step's cost: everything of the resolved cell but its identity and budget.
NOT_COST = ("seed", "device", "method", "regime", "dataset")
# Budget, and keys that leave a step's cost as it is (the schedule; the validation every
# val_every outer steps, a few rollouts), so that adding them kept the measured classes.
BUDGET = {
    "training": ("outer_steps", "checkpoint_every", "lr_schedule", "val_every"),
    "adaptation": ("steps",),
}


def cost_fingerprint(cell: dict) -> str:
    """A short hash of the settings that decide a cell's cost per step."""
    settings = {k: v for k, v in cell.items() if k not in NOT_COST}
    for block, keys in BUDGET.items():
        settings[block] = {k: v for k, v in settings.get(block, {}).items() if k not in keys}
    settings.pop("cavia_inner_steps_test", None)
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_costs(path: str | Path) -> dict[tuple[str, str, str], dict]:
    """(dataset, method, regime) -> its row; {} when the table is absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open() as f:
        return {(r["dataset"], r["method"], r["regime"]): r for r in csv.DictReader(f)}


def adaptation_steps(cell: dict) -> int:
    """Adaptation steps of a cell's evaluation (CAVIA: its test-time inner loop)."""
    if cell["learner"] == "one-for-all":
        return 0
    if cell["learner"] == "cavia":
        return int(cell.get("cavia_inner_steps_test", 0))
    return int(cell.get("adaptation", {}).get("steps", 0))


def cell_resources(cell: dict, costs: dict, stage: str) -> dict[str, int]:
    """``{"runtime": minutes, "mem_mb": MB}`` for the ``train`` or ``evaluate`` job of a cell."""
    row = costs.get((cell["dataset"], cell["method"], cell["regime"]))
    if row is None or row.get("fingerprint") != cost_fingerprint(cell):
        return dict(DEFAULTS[stage])
    if stage == "train":
        seconds = cell["training"]["outer_steps"] * float(row["s_outer"])
    else:
        seconds = adaptation_steps(cell) * float(row["s_adapt"])
    return {
        "runtime": math.ceil(MARGIN * seconds / 60) + SLACK_MIN,
        "mem_mb": max(MIN_MEM_MB, math.ceil(MARGIN * float(row["peak_mb"]) / 100) * 100),
    }
